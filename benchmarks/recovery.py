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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
    for tag, start in (("(a)", default), ("(b)", calibrated)):
        for steps in budgets:
            t = time.perf_counter()
            tuned = octify.finetune(original, start, train, steps=steps, batch_size=args.batch, seed=0)
            row(f"(c) {tag} + distillation", tuned, steps, time.perf_counter() - t)
    t = time.perf_counter()
    torch.manual_seed(1)
    scratch = octify.convert(TextureNet().train(), alpha=args.alpha, example_inputs=x, transfer_weights=False)
    scratch = train_from_scratch(scratch, train, budgets[-1], args.batch, seed=1)
    row("(d) octave net from scratch", scratch, budgets[-1], time.perf_counter() - t)

    print(f"\ntorch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} threads, alpha {args.alpha}, "
          f"batch {args.batch}, original trained {args.original_steps} steps, noise {args.noise:g}")
    print("| model | steps | top-1 | agreement | rel. error | time (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, steps, acc, agree, rel, secs in rows:
        print(f"| {name} | {steps} | {acc:.2%} | {agree:.2%} | {rel:.4f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
