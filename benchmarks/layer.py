"""OctConv2d vs the nn.Conv2d it replaces: CPU, float32, eval, no_grad.

For each shape a 3x3, padding-1 conv (C -> C, no bias, as in a ResNet block) and its octave
version at alpha = 0.5 (a pair in, a pair out, built with ``OctConv2d.from_conv``) run
alternately in one loop; the ratio is the median of the per-iteration time ratios, which
cancels most of the drift of a shared machine. Both layouts are measured: contiguous NCHW
inputs, and channels_last inputs (both modules converted with ``.to(memory_format=...)``,
as a user would). The MACs ratio is counted with torch.utils.flop_counter (pooling and
upsampling are not MACs): 1 - 3/4 a (2 - a) = 0.4375 at a = 0.5.

    python benchmarks/layer.py [--iters 200] [--batch 8] [--threads 2]
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from octify.nn import OctConv2d  # noqa: E402
from result_table import ResultTable  # noqa: E402

SHAPES = [(64, 56), (128, 28), (256, 14)]
TARGET = 0.70
NOISY = 1.5  # p90/p10 of the conv times above which a row counts as disturbed


def macs(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def bench(channels: int, size: int, layout: str, args) -> dict:
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=args.bias).eval()
    octc = OctConv2d.from_conv(conv, alpha=args.alpha).eval()
    conv = conv.to(memory_format=fmt)
    octc = octc.to(memory_format=fmt)
    x = torch.randn(args.batch, channels, size, size).contiguous(memory_format=fmt)
    xh = x[:, : octc.ih].contiguous(memory_format=fmt)
    xl = torch.randn(args.batch, octc.il, (size + 1) // 2, (size + 1) // 2).contiguous(memory_format=fmt)
    pair = (xh, xl)
    with torch.no_grad():
        yh, yl = octc(pair)
        assert yh.is_contiguous(memory_format=fmt) and yl.is_contiguous(memory_format=fmt), "layout not kept"
        mac_ratio = macs(octc, pair) / macs(conv, x)
        for _ in range(args.warmup):
            conv(x)
            octc(pair)
        t_conv, t_oct, ratios = [], [], []
        for i in range(args.iters):
            # alternate which runs first, so that neither always follows the other
            if i % 2:
                t0 = time.perf_counter(); conv(x); t1 = time.perf_counter()
                octc(pair); t2 = time.perf_counter()
                tc, to = t1 - t0, t2 - t1
            else:
                t0 = time.perf_counter(); octc(pair); t1 = time.perf_counter()
                conv(x); t2 = time.perf_counter()
                to, tc = t1 - t0, t2 - t1
            t_conv.append(tc)
            t_oct.append(to)
            ratios.append(to / tc)
    deciles = statistics.quantiles(t_conv, n=10)
    return dict(
        shape=f"{channels}ch@{size}x{size}", layout=layout, conv_ms=1e3 * statistics.median(t_conv),
        oct_ms=1e3 * statistics.median(t_oct), ratio=statistics.median(ratios), macs=mac_ratio,
        spread=deciles[-1] / deciles[0],  # p90 / p10 of the plain conv's times: ~1.1 on an idle machine
    )


def bench_row(channels: int, size: int, layout: str, args) -> dict:
    """Measure; while another process visibly competes for the cores (a wide spread of the plain
    conv's times), measure again, up to --retries times, and keep the steadiest attempt."""
    best = bench(channels, size, layout, args)
    for _ in range(args.retries):
        if best["spread"] <= NOISY:
            break
        again = bench(channels, size, layout, args)
        best = min(best, again, key=lambda r: r["spread"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=200, help="timed iterations per shape and layout (default 200)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--bias", action="store_true", help="give the conv a bias (default: none, as in ResNets)")
    parser.add_argument("--retries", type=int, default=3, help="re-measure a disturbed row up to this many times")
    parser.add_argument("--layout", choices=["both", "contiguous", "channels_last"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layouts = ["contiguous", "channels_last"] if args.layout == "both" else [args.layout]
    print(
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, "
        f"float32, batch {args.batch}, alpha {args.alpha}, eval + no_grad, {args.iters} alternated iterations"
    )
    load0 = os.getloadavg()[0]
    rows = [bench_row(c, s, layout, args) for layout in layouts for c, s in SHAPES]
    # Other processes on the machine distort 2-thread timings (a thread waiting for a core stalls
    # every parallel region, and the octave layer has more of them): say how busy it was.
    print(f"load average (1 min) before / after: {load0:.2f} / {os.getloadavg()[0]:.2f}")
    print()
    table = ResultTable("layer", ["shape", "layout", "conv ms", "octconv ms", "ratio", "MACs ratio"], "--::::")
    for r in rows:
        mark = " *" if r["spread"] > NOISY else ""
        table.row(r["shape"], r["layout"], f"{r['conv_ms']:.2f}", f"{r['oct_ms']:.2f}", f"{r['ratio']:.2f}{mark}", f"{r['macs']:.4f}")
    if any(r["spread"] > NOISY for r in rows):
        table.note(f"* disturbed by other processes (p90/p10 of the conv times > {NOISY}): not representative, run again on an idle machine")
    missed = [f"{r['shape']} {r['layout']}" for r in rows if r["ratio"] > TARGET]
    table.note(f"Batch {args.batch}, alpha {args.alpha}, float32, eval, no grad; load average before / after "
               f"{load0:.2f} / {os.getloadavg()[0]:.2f}. Target: ratio <= {TARGET:.2f} in every row: "
               + ("met." if not missed else "missed in " + ", ".join(missed) + "."))
    table.save()


if __name__ == "__main__":
    main()
