"""How much of a trained CNN's accuracy an octave conversion keeps, and what gets it back.

The task (``examples/textures.py``, generated, no download) needs fine detail: 8 classes of
stripe orientation (2-3 pixel period) x blob side, 32x32, under pixel noise of standard
deviation 1.5 (the stripes' amplitude is 0.4 to 1). The original (``TextureNet``, a small
residual CNN) is trained to convergence here; then, at alpha 0.5, octave 2:

  (a) the default conversion (the last channels of each conv low);
  (b) with calibration on 512 training images (the best on them of the measured split and the
      default one with batch-norm drift corrected, and no calibration);
  (c) (a) and (b) distilled with ``octify.finetune`` (its defaults: SGD, lr 0.01, 5% warm-up +
      cosine, KL at T=4 to the original, 10% of the data held out and the best weights kept) for
      5% and 10% of the original's training steps;
  (d) the same octave network trained from scratch (random weights, the original's own recipe)
      for that 10% budget.

Accuracy is top-1 on 2048 held-out images (another seed); agreement and rel. error are
``octify.fidelity`` against the original on them.

    python benchmarks/recovery.py                    # 1500 original steps, noise 1.5 (about 6 minutes on 2 cores)
    python benchmarks/recovery.py --original-steps 300 --noise 0.3   # a quick look

``--kind embedding`` and ``--kind dense`` measure the other kinds of output on networks trained
here on real photographs (``benchmarks/photo_tasks.py``: scikit-image's photos, whole photos held
out): an L2-normalised embedding (fidelity: the mean cosine to the original's embeddings) and a
dense edge map from a noisy crop (fidelity: the relative error of the map). Methods: the default
conversion; calibration on 512 crops of the training photos; ``octify.reconstruct`` on the same
512 unlabeled crops; ``octify.finetune`` for 300 steps of 32 crops (loss "auto": cosine for the
embedding, variance-scaled MSE for the map; and KL, the loss before issue 26, for comparison);
with feature distillation of the stage ends (``features="auto"``); on the 512 crops alone,
with and without augmentation (``augment=True``); and their combinations. Fidelity is measured
on 512 crops of the held-out photos.

    python benchmarks/recovery.py --kind embedding --original-steps 600   # about 4 minutes here
    python benchmarks/recovery.py --kind dense --original-steps 600
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import octify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from textures import TextureDataset, TextureNet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photo_tasks as pt  # noqa: E402
from result_table import ResultTable  # noqa: E402


def train_from_scratch(net: torch.nn.Module, data: TextureDataset, steps: int, batch: int, seed: int) -> torch.nn.Module:
    """The original's recipe: SGD with Nesterov momentum, one-cycle to lr 0.1, weight decay 5e-4."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), generator=gen)
        loss = F.cross_entropy(net(data.images[idx]), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--original-steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", type=float, default=1.5, help="pixel noise of the texture task (the tests use 0.3)")
    ap.add_argument("--kind", choices=("classifier", "embedding", "dense"), default="classifier")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.kind != "classifier":
        kinds_table(args)
        return
    torch.manual_seed(0)
    train, test = TextureDataset(8192, seed=0, noise=args.noise), TextureDataset(2048, seed=1, noise=args.noise)
    held = [(test.images[i:i + 256], test.labels[i:i + 256]) for i in range(0, len(test), 256)]
    calibration = [train.images[i:i + 128] for i in range(0, 512, 128)]
    x = train.images[:1]
    rows = []

    def row(name: str, model: torch.nn.Module, steps: int, seconds: float) -> None:
        r = octify.fidelity(original, model, held)
        rows.append((name, steps, r["accuracy"], r["agreement"], r["rel_error"], seconds))
        print(f"  {name}: top-1 {r['accuracy']:.2%}, agreement {r['agreement']:.2%}, rel. error {r['rel_error']:.4f} ({seconds:.0f} s)", flush=True)

    t = time.perf_counter()
    original = train_from_scratch(TextureNet(), train, args.original_steps, args.batch, seed=0)
    row("original", original, args.original_steps, time.perf_counter() - t)
    budgets = [max(1, round(args.original_steps * f)) for f in (0.05, 0.10)]

    t = time.perf_counter()
    default = octify.convert(original, alpha=args.alpha, example_inputs=x)
    row("(a) default conversion", default, 0, time.perf_counter() - t)
    t = time.perf_counter()
    calibrated = octify.convert(original, alpha=args.alpha, example_inputs=x, calibration=calibration)
    row("(b) calibrated conversion", calibrated, 0, time.perf_counter() - t)
    t = time.perf_counter()
    rebuilt = octify.reconstruct(original, default, calibration)
    row("(e) reconstruction (512 unlabeled images)", rebuilt, 0, time.perf_counter() - t)
    for tag, start in (("(a)", default), ("(b)", calibrated), ("(e)", rebuilt)):
        for steps in budgets:
            t = time.perf_counter()
            tuned = octify.finetune(original, start, train, steps=steps, batch_size=args.batch, seed=0)
            row(f"(c) {tag} + distillation", tuned, steps, time.perf_counter() - t)
    t = time.perf_counter()
    tuned = octify.finetune(original, default, train, steps=budgets[0], batch_size=args.batch, seed=0, features="auto")
    row("(c) (a) + distillation with features='auto'", tuned, budgets[0], time.perf_counter() - t)
    t = time.perf_counter()
    torch.manual_seed(1)
    scratch = octify.convert(TextureNet().train(), alpha=args.alpha, example_inputs=x, transfer_weights=False)
    scratch = train_from_scratch(scratch, train, budgets[-1], args.batch, seed=1)
    row("(d) octave net from scratch", scratch, budgets[-1], time.perf_counter() - t)

    print(f"\ntorch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} threads, alpha {args.alpha}, "
          f"batch {args.batch}, original trained {args.original_steps} steps, noise {args.noise:g}")
    table = ResultTable("recovery-classifier", ["model", "steps", "top-1", "agreement", "rel. error", "time (s)"], "-:::::")
    for name, steps, acc, agree, rel, secs in rows:
        table.row(name, steps, f"{acc:.2%}", f"{agree:.2%}", f"{rel:.4f}", f"{secs:.0f}")
    table.note(f"Alpha {args.alpha}, batch {args.batch}, the original trained {args.original_steps} steps, pixel noise "
               f"{args.noise:g}; top-1 on 2048 held-out images, agreement and rel. error against the original on them.")
    table.save()


def kinds_table(args: argparse.Namespace) -> None:
    """The embedding or the dense-map network: each method's fidelity on held-out photos."""
    train_photos, held_photos, held_names = pt.photos()
    embedding = args.kind == "embedding"
    t = time.perf_counter()
    original = (pt.train_embedding if embedding else pt.train_edges)(train_photos, args.original_steps)
    trained_s = time.perf_counter() - t
    prep = (lambda x, seed: x) if embedding else (lambda x, seed: pt.noisy(x, 0.3, seed))  # noqa: E731
    unlabeled = [prep(pt.crops(train_photos, 32, seed=50_000 + i)[0], 50_000 + i) for i in range(16)]  # 512 crops
    steps_data = [prep(pt.crops(train_photos, 32, seed=60_000 + i)[0], 60_000 + i) for i in range(300)]  # 300 x 32
    validation = [prep(pt.crops(train_photos, 64, seed=70_000 + i)[0], 70_000 + i) for i in range(4)]
    held = [prep(pt.crops(held_photos, 64, seed=80_000 + i)[0], 80_000 + i) for i in range(8)]  # 512 crops
    x = unlabeled[0][:1]
    rows = []

    def row(name: str, model: torch.nn.Module, seconds: float) -> torch.nn.Module:
        r = octify.fidelity(original, model, held)
        rows.append((name, r["cosine"], r["rel_error"], seconds))
        print(f"  {name}: cosine {r['cosine']:.4f}, rel. error {r['rel_error']:.4f} ({seconds:.1f} s)", flush=True)
        return model

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    default = row("default conversion", *timed(lambda: octify.convert(original, alpha=args.alpha, example_inputs=x)))
    calibrated = row("calibration", *timed(lambda: octify.convert(original, alpha=args.alpha, example_inputs=x, calibration=unlabeled)))
    rebuilt = row("reconstruction", *timed(lambda: octify.reconstruct(original, default, unlabeled)))
    row("calibration + reconstruction", *timed(lambda: octify.reconstruct(original, calibrated, unlabeled)))
    tune = dict(steps=300, batch_size=32, lr=0.01, validation=validation)
    row("distillation (loss auto)", *timed(lambda: octify.finetune(original, default, steps_data, **tune)))
    row("distillation (loss kl)", *timed(lambda: octify.finetune(original, default, steps_data, loss="kl", **tune)))
    row("reconstruction + distillation", *timed(lambda: octify.finetune(original, rebuilt, steps_data, **tune)))
    row("distillation + features (auto)", *timed(lambda: octify.finetune(original, default, steps_data, features="auto", **tune)))
    # A small set: the 512 unlabeled crops cycled through, as they are and as augmented views.
    row("distillation on 512 crops", *timed(lambda: octify.finetune(original, default, unlabeled, **tune)))
    row("distillation on 512 crops, augmented", *timed(lambda: octify.finetune(original, default, unlabeled, augment=True, **tune)))
    print(f"\ntorch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} threads, alpha {args.alpha}")
    table = ResultTable(f"recovery-{args.kind}", ["method", "cosine", "rel. error", "time (s)"], "-:::")
    for name, cos, rel, secs in rows:
        table.row(name, f"{cos:.4f}", f"{rel:.4f}", f"{secs:.1f}")
    table.note(f"Alpha {args.alpha}; {'EmbedNet' if embedding else 'EdgeNet'} trained {args.original_steps} steps in {trained_s:.0f} s "
               f"on {len(train_photos)} photos; fidelity on 512 crops of the held-out photos ({', '.join(held_names)}).")
    table.save()


if __name__ == "__main__":
    main()
