"""Where the time of a frozen octave model goes, against the plain model: a ``torch.profiler`` breakdown.

For each model and batch, the frozen octave model (``octify.freeze(octify.convert(m, alpha=0.5),
example_inputs=x)``) and the best plain configuration of the original (``octify.freeze(m)``) run
under ``torch.profiler`` (CPU, eager, inference mode, after warm-up); per forward, the table gives
the time without the profiler, the number of aten calls, and the profiled time split into the
convolution kernels (oneDNN's and PyTorch's own), the matrix products (the 1x1 octave paths),
every other aten kernel (pooling, additions, activations, copies, views, concatenations), and
the rest: Python, the GraphModule's code and the dispatcher outside any aten kernel. It is the
profile behind the speed figures of ``latency.py --deploy``: how much of the MACs' saving the
small convolutions keep, and what the extra calls cost.

    python benchmarks/profile_ops.py                     # resnet50 and resnet18, batch 1 and 8, 2 threads
    python benchmarks/profile_ops.py --models resnet50 --batches 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from result_table import ResultTable  # noqa: E402

CONVOLUTIONS = {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::slow_conv3d_forward", "aten::_mkldnn_convolution",
                "aten::thnn_conv2d", "aten::_nnpack_spatial_convolution", "aten::slow_conv_dilated2d"}
PRODUCTS = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm"}
DEFAULT = (["resnet50", "resnet18"], [1, 8], 2)


def breakdown(model, x: torch.Tensor, forwards: int) -> dict:
    """Per forward: unprofiled ms, aten calls, and the profiled ms by kind."""
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        walls = []
        for _ in range(forwards):
            t0 = time.perf_counter()
            model(x)
            walls.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(forwards):
                model(x)
        profiled = (time.perf_counter() - t0) * 1e3 / forwards
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    per = lambda keys: sum(e.self_cpu_time_total for e in events if e.key in keys) / 1e3 / forwards  # noqa: E731
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / forwards
    conv, mm = per(CONVOLUTIONS), per(PRODUCTS)
    return {"ms": statistics.median(walls), "calls": sum(e.count for e in events) / forwards, "conv": conv, "mm": mm,
            "other": total - conv - mm, "host": max(0.0, profiled - total)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT[0])
    p.add_argument("--batches", nargs="+", type=int, default=DEFAULT[1])
    p.add_argument("--threads", type=int, default=DEFAULT[2])
    p.add_argument("--forwards", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    table = ResultTable("profile-ops", ["model", "batch", "side", "forward ms", "aten calls", "convolutions ms", "matrix products ms",
                                        "other kernels ms", "outside kernels ms", "MACs"], "-:-:::::::")
    for name in args.models:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name, weights=None).eval()
            x1 = torch.randn(1, 3, 224, 224)
            converted = octify.convert(model, alpha=0.5, example_inputs=x1).eval()
        base = octify.profile(model, x1).macs
        macs = {"plain": 1.0, "octave": octify.profile(converted, x1).macs / base}
        plain = octify.freeze(model)
        for batch in args.batches:
            x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
            sides = {"plain": plain, "octave": octify.freeze(converted, example_inputs=x)}
            got = {side: breakdown(m, x, args.forwards) for side, m in sides.items()}
            for side, r in got.items():
                table.row(name, batch, side, f"{r['ms']:.1f}", f"{r['calls']:.0f}", f"{r['conv']:.1f}", f"{r['mm']:.1f}",
                          f"{r['other']:.1f}", f"{r['host']:.1f}", f"{macs[side]:.2f}x")
            kernels = {s: got[s]["conv"] + got[s]["mm"] for s in got}
            table.note(f"{name}, batch {batch}: the octave model's convolutions and products take {kernels['octave'] / kernels['plain']:.2f}x "
                       f"the plain model's for {macs['octave']:.2f}x the MACs; everything else {got['octave']['other'] + got['octave']['host']:.1f} ms "
                       f"against {got['plain']['other'] + got['plain']['host']:.1f}.")
    table.note(f"{args.threads} threads, eager, float32, inference mode, 224x224, alpha 0.5; {args.forwards} forwards profiled after 3 "
               "to warm up; forward ms is the median without the profiler.")
    table.save(unless="" if (args.models, args.batches, args.threads) == DEFAULT else "other models, batches or threads than the default")


if __name__ == "__main__":
    main()
