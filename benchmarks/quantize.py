"""int8 post-training static quantization of converted models through torchao's PT2E flow.

Each model is quantized twice, the torchvision original and its octave conversion, with the
same maintained flow (torchao's PT2E + X86InductorQuantizer, lowered to oneDNN int8 kernels by
torch.compile / inductor):

    frozen = octify.freeze(octify.convert(model, alpha, example_inputs=x).eval(), matmul_1x1=False, merge_lh=True)
    gm = torch.export.export(frozen, (x,), strict=True).module()
    quantizer = X86InductorQuantizer(); quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(gm, quantizer); [prepared(b) for b in calibration]; q = convert_pt2e(prepared)
    torch._inductor.config.freezing = True; fast = torch.compile(q)

``matmul_1x1=False`` keeps the 1x1 octave convs as convs (as matrix products, which freeze picks
where they are faster in float, X86InductorQuantizer would leave them float: it annotates convs);
``merge_lh=True`` computes each layer's L->H path in its low output's conv (two int8 convs per
layer instead of three: each int8 conv call has a fixed cost).
`strict=True`: under non-strict export, one nn.ReLU module called at several places (the two
branches of an octave pair, or torchvision's BasicBlock) forms one multi-output source partition
and X86InductorQuantizer's conv fusion annotation raises "Input partition has more than one
output node" (torchao 0.18; the original torchvision ResNets fail the same way). At 224x224
ResNets compile; at sizes where a residual add takes the reshape view of octify's L->H add
(e.g. 64x64) inductor's int8 conv+add lowering raises "QConv Binary Inplace Fusion requires accum
is not an alias or mutation." (torch 2.14.1); the q/dq model still runs uncompiled.

    python benchmarks/quantize.py                      # resnet18, resnet50, mobilenet_v3_large at batch 8 (the docs' table)
    python benchmarks/quantize.py --models resnet50 --batch 1 --alpha 0.5 --size 224

Columns: fp32 ms are eager float32 (the original with octify.freeze applied too, i.e. BN folded
and channels-last, so that only octave layers differ), int8 ms the compiled quantized model;
the median of runs alternated between the four models after warm-up (--compile-fp32 adds the
float models compiled the same way, to separate int8 from what inductor fuses). "rel err" is
max|int8 - fp32| / max|fp32| of each int8 model against its own fp32 model over the evaluation
batches (fresh random images, like the calibration ones), "eager" the same for the reference
(uncompiled, q/dq + float ops) quantized model on one batch, "top-1" the fraction of images
whose argmax agrees. Random-weight networks give every random image the same top-1 class (the
footnote counts them), so "centered" repeats both on each model's outputs minus their mean over
the images: the image-dependent part, which quantization noise must not drown (nan where the
fp32 outputs hardly depend on the image at all: random-weight MobileNetV3). "quantized" counts conv2d/linear nodes whose input and weight both come
from a dequantize (int8) over all of them; "octave" restricts that to OctConv2d's convs.
Weights are random (weights=None, seed 0) with random batch-norm statistics.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import torch
import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  (registers the quantized_decomposed ops named below)
import torchvision
from torch import nn

import octify
from forms import compiled, for_int8, quantize
from result_table import ResultTable

A, QD = torch.ops.aten, torch.ops.quantized_decomposed
DEQUANT = {QD.dequantize_per_tensor.default, QD.dequantize_per_tensor.tensor, QD.dequantize_per_channel.default}
VIEWS = {A.view.default, A.t.default, A.permute.default, A.reshape.default, A._unsafe_view.default}
GEMMS = {A.conv2d.default: (0, 1), A.linear.default: (0, 1), A.mm.default: (0, 1), A.addmm.default: (1, 2), A.addmm_.default: (1, 2)}


def build(name: str) -> nn.Module:
    """A random-weight torchvision model with non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def images(n: int, batch: int, size: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n)]


def _source(n):
    while isinstance(n, torch.fx.Node) and n.op == "call_function" and n.target in VIEWS:
        n = n.args[0]
    return n


def is_octave(node: torch.fx.Node) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    return bool(stack) and "OctConv2d" in str(list(stack.values())[-1][1])


def quantized_counts(gm: torch.fx.GraphModule) -> dict[str, tuple[int, int]]:
    """{"all": (quantized, total), "octave": (...)} over conv2d/linear/mm/addmm nodes."""
    counts = {"all": [0, 0], "octave": [0, 0]}
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target not in GEMMS:
            continue
        i, w = GEMMS[n.target]
        q = all(getattr(_source(n.args[k]), "target", None) in DEQUANT for k in (i, w))
        for key in ("all", "octave") if is_octave(n) else ("all",):
            counts[key][0] += q
            counts[key][1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def alternate(fns: dict, x: torch.Tensor, iters: int) -> dict[str, float]:
    """Median ms of each function; the order rotates every round so none always runs first."""
    names = list(fns)
    times = {k: [] for k in names}
    with torch.inference_mode():
        for _ in range(2):
            for k in names:
                fns[k](x)
        for i in range(iters):
            for k in names[i % len(names):] + names[: i % len(names)]:
                t0 = time.perf_counter()
                fns[k](x)
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def agreement(fp32, int8, inputs: list[torch.Tensor]) -> dict:
    """rel err and top-1 agreement of the outputs, and of their image-dependent part (each
    model's outputs minus their mean over the images), and the number of distinct fp32 top-1."""
    with torch.inference_mode():
        ref = torch.cat([fp32(x) for x in inputs])
        got = torch.cat([int8(x) for x in inputs])
    out = {"classes": ref.argmax(1).unique().numel()}
    for tag, r, g in (("", ref, got), ("c", ref - ref.mean(0), got - got.mean(0))):
        if r.abs().max() < 1e-3 * ref.abs().max():  # the outputs do not depend on the image: n/a
            out[tag + "rel"] = out[tag + "top1"] = float("nan")
            continue
        out[tag + "rel"] = ((g - r).abs().max() / r.abs().max()).item()
        out[tag + "top1"] = (g.argmax(1) == r.argmax(1)).float().mean().item()
    return out


def eager_rel(fp32, int8, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = fp32(x)
        return ((int8(x) - ref).abs().max() / ref.abs().max()).item()


def run(name: str, args: argparse.Namespace) -> dict:
    model = build(name)
    calib = images(args.calib, args.batch, args.size, seed=1)
    evals = images(args.eval_batches, args.batch, args.size, seed=2)
    x = evals[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oct_model = octify.convert(model, alpha=args.alpha, example_inputs=x).eval()
        fp32 = {"orig": octify.freeze(model), "oct": octify.freeze(oct_model)}
        to_quantize = {"orig": model, "oct": for_int8(oct_model)}
        row = {}
        int8 = {}
        for k in ("orig", "oct"):
            t0 = time.perf_counter()
            qm = quantize(to_quantize[k], calib)
            row[k + " counts"] = quantized_counts(qm)
            row[k + " eager"] = eager_rel(fp32[k], qm, x)
            int8[k] = compiled(qm, x)
            row[k + " prep s"] = time.perf_counter() - t0
            row[k] = agreement(fp32[k], int8[k], evals)
        fns = {"orig fp32": fp32["orig"], "orig int8": int8["orig"], "oct fp32": fp32["oct"], "oct int8": int8["oct"]}
        if args.compile_fp32:  # the float models through the same compiler, for reference
            for k in ("orig", "oct"):
                fns[k + " fp32c"] = compiled(fp32[k], x)
    row.update(alternate(fns, x, args.iters))
    return row


DEFAULT_MODELS = ["resnet18", "resnet50", "mobilenet_v3_large"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib", type=int, default=8, help="calibration batches")
    p.add_argument("--eval-batches", type=int, default=4, help="batches the agreement is measured on")
    p.add_argument("--compile-fp32", action="store_true", help="also time the fp32 models compiled (same settings)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import torchao

    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, torchao {torchao.__version__}, "
        f"{torch.get_num_threads()} threads; alpha {args.alpha}, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.calib} calibration batches, {args.eval_batches} evaluation batches, {args.iters} timed rounds"
    )
    table = ResultTable("quantize", [
        "model", "orig fp32 ms", "orig int8 ms", "octave fp32 ms", "octave int8 ms", "int8 speed-up orig / octave",
        "rel err orig / octave (eager)", "top-1 orig / octave", "centered: rel err, top-1 orig / octave",
        "quantized orig / octave (octave convs)"], "-:::::----")
    for name in args.models:
        try:
            r = run(name, args)
        except Exception as e:  # noqa: BLE001 - one failing model should not hide the others
            table.row(name, *["-"] * 8, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        co, cq = r["orig counts"], r["oct counts"]
        table.row(
            name, f"{r['orig fp32']:.1f}", f"{r['orig int8']:.1f}", f"{r['oct fp32']:.1f}", f"{r['oct int8']:.1f}",
            f"{r['orig fp32'] / r['orig int8']:.2f}x / {r['oct fp32'] / r['oct int8']:.2f}x",
            f"{r['orig']['rel']:.3f} ({r['orig eager']:.3f}) / {r['oct']['rel']:.3f} ({r['oct eager']:.3f})",
            f"{r['orig']['top1']:.2f} / {r['oct']['top1']:.2f}",
            f"{r['orig']['crel']:.3f}, {r['orig']['ctop1']:.2f} / {r['oct']['crel']:.3f}, {r['oct']['ctop1']:.2f}",
            f"{co['all'][0]}/{co['all'][1]} / {cq['all'][0]}/{cq['all'][1]} ({cq['octave'][0]}/{cq['octave'][1]})",
        )
        extra = f"; fp32 compiled: orig {r['orig fp32c']:.1f} ms, octave {r['oct fp32c']:.1f} ms" if args.compile_fp32 else ""
        table.note(f"{name}: distinct fp32 top-1 classes over the {args.eval_batches * args.batch} images: orig {r['orig']['classes']}, "
                   f"octave {r['oct']['classes']}; quantize + compile: orig {r['orig prep s']:.0f} s, octave {r['oct prep s']:.0f} s{extra}.")
    table.note(f"alpha {args.alpha}, batch {args.batch}, {args.size}x{args.size}, {args.calib} calibration batches, {args.eval_batches} "
               f"evaluation batches, {args.iters} timed rounds, {torch.get_num_threads()} threads, torchao {torchao.__version__}.")
    default = (args.models, args.alpha, args.batch, args.size, args.compile_fp32) == (DEFAULT_MODELS, 0.5, 8, 224, False)
    table.save(unless="" if default else "other settings than the default")

if __name__ == "__main__":
    main()
