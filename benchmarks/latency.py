"""Latency of frozen octave models against the best plain configuration of their originals, and
conversion time.

CPU, float32, eval, inference mode, 224x224 inputs. The octave side is what the docs tell users
to deploy, ``octify.freeze(octify.convert(m), example_inputs=x)`` (batch norms folded,
channels-last, fused low weights, 1x1 octave convs as matrix products where they measure faster
on x's batch); the plain side is the best plain configuration of the original, ``octify.freeze``
of it (BN folded, channels-last), so that layout and folding do not count as octave speed. Both
run alternated in one process; a figure is the median of the per-pair ratios, measured twice.

    python benchmarks/latency.py                       # the default policy over seven families, alpha 0.25 / 0.5, batch 1 / 8
    python benchmarks/latency.py --models resnet50 --batches 8 --iters 9
    python benchmarks/latency.py --convert-times       # conversion seconds vs graph nodes
    python benchmarks/latency.py --deploy              # one row per deployment setting (issue 24), ~12 min
    python benchmarks/latency.py --plan                # policy="latency", the measured plan, 8 families (issue 25)

``--deploy`` prints one table over the settings users deploy in, each against the best plain
configuration of the original given the same treatment, alternated in one process: eager at 2
threads (batch 1 and 8) and 1 thread (batch 1), ``octify.freeze`` on both sides; torch.compile
with inductor freezing of both frozen models (the octave one with ``matmul_1x1=False``: inductor
fuses bias, activation and sums into convolutions, not into matrix products); int8 through
torchao's PT2E flow (README's: ``freeze(matmul_1x1=False, merge_lh=True)``, strict ``torch.export`` with a
dynamic batch, X86InductorQuantizer, 8 calibration batches, inductor freezing) against the
original's int8; r3d_18 on one
1x3x8x112x112 clip, each side in the fastest of its frozen forms (memory format x ``conv3d``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from typing import Callable

import torch
import torch.fx as fx
import torchvision
from torch import nn

import octify
from forms import TARGETS, compiled, for_int8, int8
from result_table import ResultTable
from timing import alternate, time_one

# The default table's models: the families that neither --deploy (resnet18, resnet50) nor --plan covers at the default policy.
FAMILIES = ["resnet101", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "efficientnet_b0", "regnet_y_800mf", "densenet121"]
CL = torch.channels_last


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None).eval()


def macs(model: nn.Module, x: torch.Tensor) -> int:
    return octify.profile(model, x).macs


def converted(model: nn.Module, alpha: float, policy: str, x224: torch.Tensor, base_macs: int) -> tuple[nn.Module, float]:
    """The eval-mode conversion and its MACs ratio to the original."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = octify.convert(model, alpha=alpha, example_inputs=x224, policy=policy).eval()
    return conv, macs(conv, x224) / base_macs


def latency_table(args: argparse.Namespace) -> None:
    """The default policy over the families ``--deploy`` leaves out: each frozen octave model
    (frozen on the batch it runs) against the best plain configuration, alternated, twice."""
    table = ResultTable("latency-families", ["model", "alpha", "batch", "best plain ms", "octave ms", "ratio run 1 / run 2",
                                             "MACs ratio"], "-::::::")
    ratios = []
    for name in args.models:
        model = build(name)
        x224 = torch.randn(1, 3, 224, 224)
        base_macs = macs(model, x224)
        plain = octify.freeze(model)
        for alpha in args.alphas:
            conv, ratio_macs = converted(model, alpha, args.policy, x224, base_macs)
            for batch in args.batches:
                x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=CL)
                frozen = octify.freeze(conv, example_inputs=x)
                runs = [alternate(lambda: plain(x), lambda: frozen(x), args.iters) for _ in range(2)]
                ratios.append(max(r[2] for r in runs))
                table.row(name, f"{alpha:g}", batch, f"{runs[0][0]:.1f}", f"{runs[0][1]:.1f}",
                          f"{runs[0][2]:.2f} / {runs[1][2]:.2f}", f"{ratio_macs:.2f}")
    table.note(f"policy={args.policy!r}; faster than the best plain configuration in both runs: {sum(r < 1 for r in ratios)} "
               f"of {len(ratios)} rows.")
    default = args.models == FAMILIES and args.alphas == [0.25, 0.5] and args.batches == [1, 8] and args.policy == "default"
    table.save(unless="" if default else "other models, alphas, batches or policy than the default")


def convert_times(args: argparse.Namespace) -> None:
    table = ResultTable("convert-times", ["model", "graph nodes", "convert s (trace + plan + rewrite + verify)", "s per 1000 nodes"], "-:::")
    for name in ("resnet18", "resnet50", "resnet101", "resnet152", "efficientnet_b7"):
        model = build(name)
        nodes = len(fx.symbolic_trace(model).graph.nodes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            octify.convert(model)  # warm the caches of torch's fake tensors
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                octify.convert(model)
                times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        table.row(name, nodes, f"{s:.2f}", f"{1000 * s / nodes:.2f}")
    table.note("Median of 3 conversions after one to warm up; the default policy, alpha 0.5, 224x224.")
    table.save()


def _fastest(forms: dict, x: torch.Tensor, iters: int) -> tuple[str, Callable]:
    name = min(forms, key=lambda k: time_one(lambda: forms[k](x), iters))
    return name, forms[name]


def _twice(a: Callable, b: Callable, x: torch.Tensor, iters: int) -> tuple[float, float, str, float]:
    """Two alternated measurements of b against a: the first's median ms of each, both ratios as
    the table shows them, and the larger ratio."""
    first = alternate(lambda: a(x), lambda: b(x), iters)
    second = alternate(lambda: a(x), lambda: b(x), iters)
    return first[0], first[1], f"**{first[2]:.2f}** / **{second[2]:.2f}**", max(first[2], second[2])


def _video_row(table: ResultTable, args: argparse.Namespace) -> bool:
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    model = r3d_18().eval()
    x = torch.randn(1, 3, 8, 112, 112)
    conv = octify.convert(model, alpha=0.5, example_inputs=x).eval()
    ratio_macs = macs(conv, x) / macs(model, x)
    forms = [(fmt, k) for fmt in ("preserve", "channels_last") for k in ("torch", "onednn")]
    plain_name, plain = _fastest({f: octify.freeze(model, memory_format=f[0], conv3d=f[1]) for f in forms}, x, 3)
    oct_name, octave = _fastest({f: octify.freeze(conv, memory_format=f[0], conv3d=f[1]) for f in forms}, x, 3)
    a, b, ratios, worst = _twice(plain, octave, x, args.iters)
    table.row(f"eager, {torch.get_num_threads()} threads, batch 1, video 1x3x8x112x112 (plain {'/'.join(plain_name)}, "
              f"octave {'/'.join(oct_name)})", "r3d_18", f"{a:.1f}", f"{b:.1f}", ratios, f"{ratio_macs:.2f}", "<= 0.80")
    return worst <= 0.80


def deploy_table(args: argparse.Namespace) -> None:
    """One row per deployment setting and model (see the module docstring), each measured twice."""
    table = ResultTable("latency-deploy", ["setting", "model", "best plain ms", "octave ms", "ratio (run 1 / run 2)", "MACs ratio",
                                           "target"], "--::::-")
    labels = {"eager": "eager (octify.freeze)", "compiled": "torch.compile, inductor freezing", "int8": "int8 (torchao PT2E, inductor)"}
    met = []
    for name in args.models:
        model = build(name)
        x224 = torch.randn(1, 3, 224, 224)
        conv, ratio_macs = converted(model, 0.5, "default", x224, macs(model, x224))
        plain, octave = octify.freeze(model), octify.freeze(conv)
        calibration = [torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(i)) for i in range(8)]
        for kind in ("eager", "compiled", "int8"):
            if kind == "compiled":
                # 1x1 octave convs as convs: inductor fuses bias, activation and sum into them as oneDNN post-ops
                a_fn, b_fn = compiled(plain, x224), compiled(octify.freeze(conv, matmul_1x1=False), x224)
            elif kind == "int8":
                a_fn, b_fn = int8(model, calibration), int8(for_int8(conv), calibration)
            else:
                a_fn, b_fn = plain, octave
            for threads, batch in ((2, 1), (2, 8), (1, 1)) if kind == "eager" else ((2, 1), (2, 8)):
                torch.set_num_threads(threads)
                x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=CL)
                if kind == "eager":  # freeze times its 1x1 kernels on the batch and threads it will run with
                    b_fn = octify.freeze(conv, example_inputs=x)
                a, b, ratios, worst = _twice(a_fn, b_fn, x, args.iters)
                target = TARGETS[(kind, threads, batch)]
                met.append(worst <= target)
                table.row(f"{labels[kind]}, {threads} thread{'s' if threads > 1 else ''}, batch {batch}", name, f"{a:.1f}", f"{b:.1f}",
                          ratios, f"{ratio_macs:.2f}", f"<= {target:.2f}")
        torch.set_num_threads(args.threads)
        torch._dynamo.reset()
    met.append(_video_row(table, args))
    table.note(f"Targets met in both runs: {sum(met)} of {len(met)} rows.")
    table.save(unless="" if args.models == ["resnet18", "resnet50"] else "other models than the default")


PLAN_MODELS = [
    "resnet50", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_800mf", "densenet121",
    "convnext_tiny",
]


def plan_table(args: argparse.Namespace) -> None:
    """``policy="latency"`` (issue 25): the measured plan at each batch, its frozen model against the
    best plain configuration (``octify.freeze`` of the original), alternated, measured twice."""
    table = ResultTable("latency-plan", ["model", "batch", "plan s", "octave blocks", "MACs ratio", "plan's own check",
                                         "ratio run 1 / run 2"], "-::::::")
    ratios, plan_times = [], []
    for name in args.models:
        model = build(name)
        plain = octify.freeze(model)
        x1 = torch.randn(1, 3, 224, 224)
        base = macs(model, x1)
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=CL)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                conv = octify.convert(model, example_inputs=x, policy="latency", latency_cache=False).eval()
            plan_s = time.perf_counter() - t0
            plan_times.append(plan_s)
            lp = octify.record_of(conv).latency_plan
            frozen = octify.freeze(conv, example_inputs=x)
            runs = [alternate(lambda: plain(x), lambda: frozen(x), args.iters)[2] for _ in range(2)]
            ratios.append(statistics.mean(runs))
            units = lp.get("units", [])
            check = f"{lp['verified_ratio']:.2f}" if lp.get("verified_ratio") is not None else "plain"
            table.row(name, batch, f"{plan_s:.0f}", f"{sum(1 for u in units if u['alpha'])}/{len(units)}",
                      f"{macs(conv, x1) / base:.2f}", check, f"{runs[0]:.2f} / {runs[1]:.2f}")
    geo = statistics.geometric_mean(ratios)
    table.note(f"Geometric mean of the ratios: {geo:.2f}; worst: {max(ratios):.2f}; at most 1.03x: "
               f"{sum(r <= 1.03 for r in ratios)} of {len(ratios)}; the longest plan: {max(plan_times):.0f} s.")
    table.save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=FAMILIES)
    p.add_argument("--alphas", nargs="+", type=float, default=[0.25, 0.5])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--policy", default="default", help="the conversion policy of the default table")
    p.add_argument("--iters", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--convert-times", action="store_true", help="print the conversion-time table instead")
    p.add_argument("--deploy", action="store_true", help="one table over the deployment settings (default models: resnet18 resnet50)")
    p.add_argument("--plan", action="store_true", help="policy='latency' (the measured plan) over eight families, batch 1 and 8")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads, float32, eval, inference_mode, 224x224"
    )
    if args.plan:
        if args.models == FAMILIES:
            args.models = PLAN_MODELS
        plan_table(args)
    elif args.deploy:
        if args.models == FAMILIES:
            args.models = ["resnet18", "resnet50"]
        deploy_table(args)
    elif args.convert_times:
        convert_times(args)
    else:
        latency_table(args)


if __name__ == "__main__":
    main()
