"""Latency of converted networks against their originals (issue 6), and conversion time.

CPU, float32, eval, no grad, torch.set_num_threads(THREADS), 224x224 inputs. The original and
the converted model run alternated in one process; the figure is the median of the per-pair
ratios. The octave side is what README tells users to deploy: ``octify.freeze(octify.convert(m))``
(batch norms folded, channels-last, fused low weights, 1x1 octave convs as matrix products).
Two comparisons per row:

- "given": the original as the user has it (NCHW, BN unfolded) against the frozen octave model,
  both fed the user's NCHW input;
- "best plain": the fastest plain configuration of the original (as given, channels_last,
  conv-BN folded, both: ``octify.freeze`` of the plain model) against the same frozen octave
  model, so that memory format and BN folding do not count as octave speed.

The "converted ms" column is ``octify.convert``'s output before freezing (batch norms as
separate calls, weights read as they are on every call), for reference.

    python benchmarks/latency.py                       # the full table (about 15 minutes here)
    python benchmarks/latency.py --models resnet50 --batches 8 --iters 9
    python benchmarks/latency.py --convert-times       # conversion seconds vs graph nodes
    python benchmarks/latency.py --compile --models resnet50 --alphas 0.5 --policies default
"""

from __future__ import annotations

import argparse
import copy
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

MODELS = [
    "resnet18", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2",
    "mobilenet_v2", "efficientnet_b0", "regnet_y_800mf", "densenet121",
]
CL = torch.channels_last


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None).eval()


def alternate(a: Callable, b: Callable, xa: torch.Tensor, xb: torch.Tensor, iters: int) -> tuple[float, float, float]:
    """Median ms of a, of b, and median of the per-pair ratios b/a, runs alternated."""
    ta, tb, ratios = [], [], []
    with torch.inference_mode():
        for _ in range(2):
            a(xa)
            b(xb)
        for i in range(iters):
            # Alternate which goes first, so that neither always runs on a warmer cache.
            first, second = (a, b) if i % 2 == 0 else (b, a)
            x1, x2 = (xa, xb) if i % 2 == 0 else (xb, xa)
            t0 = time.perf_counter()
            first(x1)
            t1 = time.perf_counter()
            second(x2)
            t2 = time.perf_counter()
            da, db = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
            ta.append(da)
            tb.append(db)
            ratios.append(db / da)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3, statistics.median(ratios)


def time_one(f: Callable, x: torch.Tensor, iters: int) -> float:
    with torch.inference_mode():
        f(x)
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            f(x)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def macs(model: nn.Module, x: torch.Tensor) -> int:
    return octify.profile(model, x).macs


def converted(model: nn.Module, alpha: float, policy: str, x224: torch.Tensor, base_macs: int) -> tuple[nn.Module, float]:
    """The eval-mode conversion and its MACs ratio to the original."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = octify.convert(model, alpha=alpha, example_inputs=x224, policy=policy).eval()
    return conv, macs(conv, x224) / base_macs


def configure(model: nn.Module, fold: bool, channels_last: bool) -> nn.Module:
    """A copy of ``model`` with the plain tricks applied (``model`` itself stays as it is:
    ``Module.to`` works in place)."""
    if fold:
        return octify.freeze(model, memory_format="channels_last" if channels_last else "preserve")
    out = copy.deepcopy(model)
    return out.to(memory_format=CL) if channels_last else out


def latency_table(args: argparse.Namespace) -> None:
    print("| model | policy | alpha | batch | original ms | frozen octave ms | ratio (given) | best plain | best plain ms | frozen octave ms | ratio (best plain) | converted ms | MACs ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = build(name)
        x224 = torch.randn(1, 3, 224, 224)
        base_macs = macs(model, x224)
        plain = {
            (fold, cl): configure(model, fold, cl) for fold in (False, True) for cl in (False, True)
        }
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224)
            xcl = x.contiguous(memory_format=CL)
            # The best plain configuration at this batch size (a short timing of each).
            best = min(plain, key=lambda k: time_one(plain[k], xcl if k[1] else x, max(3, args.iters // 3)))
            best_label = {(False, False): "as given", (False, True): "channels_last", (True, False): "BN folded", (True, True): "folded+CL"}[best]
            for policy in args.policies:
                for alpha in args.alphas:
                    conv, ratio_macs = converted(model, alpha, policy, x224, base_macs)
                    frozen = octify.freeze(conv)
                    o_ms, f_ms, r_given = alternate(model, frozen, x, x, args.iters)
                    xb = xcl if best[1] else x
                    b_ms, fb_ms, r_best = alternate(plain[best], frozen, xb, xb, args.iters)
                    c_ms = time_one(conv, x, max(3, args.iters // 3))
                    print(
                        f"| {name} | {policy} | {alpha:g} | {batch} | {o_ms:.1f} | {f_ms:.1f} | {r_given:.2f} | {best_label} | "
                        f"{b_ms:.1f} | {fb_ms:.1f} | {r_best:.2f} | {c_ms:.1f} | {ratio_macs:.2f} |",
                        flush=True,
                    )


def compiled_table(args: argparse.Namespace) -> None:
    """Both sides through torch.compile (inductor): the converted model compiles as one graph."""
    print("| model | policy | alpha | batch | original compiled ms | converted compiled ms | ratio | MACs ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = build(name)
        x224 = torch.randn(1, 3, 224, 224)
        base_macs = macs(model, x224)
        original = torch.compile(model)
        for policy in args.policies:
            for alpha in args.alphas:
                conv, ratio_macs = converted(model, alpha, policy, x224, base_macs)
                compiled = torch.compile(octify.freeze(conv))
                for batch in args.batches:
                    x = torch.randn(batch, 3, 224, 224)
                    o_ms, c_ms, r = alternate(original, compiled, x, x, args.iters)
                    print(f"| {name} | {policy} | {alpha:g} | {batch} | {o_ms:.1f} | {c_ms:.1f} | {r:.2f} | {ratio_macs:.2f} |", flush=True)


def convert_times(args: argparse.Namespace) -> None:
    print("| model | graph nodes | convert s (trace + plan + rewrite + verify) | s per 1000 nodes |")
    print("|---|---:|---:|---:|")
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
        print(f"| {name} | {nodes} | {s:.2f} | {1000 * s / nodes:.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--alphas", nargs="+", type=float, default=[0.25, 0.5])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--policies", nargs="+", default=["default", "latency"])
    p.add_argument("--iters", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--convert-times", action="store_true", help="print the conversion-time table instead")
    p.add_argument("--compile", action="store_true", help="compile both sides with torch.compile (eager table otherwise)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads, float32, eval, inference_mode, 224x224"
    )
    if args.convert_times:
        convert_times(args)
    elif args.compile:
        compiled_table(args)
    else:
        latency_table(args)


if __name__ == "__main__":
    main()
