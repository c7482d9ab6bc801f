"""r3d_18 (torchvision's 3-D ResNet-18 for video) vs its octave conversion: CPU, float32, eval, no_grad.

The converted model is ``octify.convert(r3d_18, alpha=0.5)``: OctConv3d layers with the octave
on H and W, time kept at full resolution. Both sides run frozen the same way
(``octify.freeze(model, memory_format=..., conv3d=...)``: batch norms folded), alternately in one
loop (which goes first alternates too) on one 1 x 3 x 8 x 112 x 112 clip; the table gives the
median time of each and the median of the per-iteration ratios, which cancels most of the drift
of a shared machine. MACs are counted by ``octify.profile`` (torch.utils.flop_counter, 2 FLOPs
per MAC; pooling and upsampling are not MACs). Rows: both 5-D layouts (``preserve``: NCDHW;
``channels_last``: channels_last_3d weights, the input converted too) x both conv3d kernels:
``torch`` (PyTorch's choice: at batch 1 a Conv3d whose N*C*T*H is at most 20480 runs its slow
im2col kernel, ``slow_conv3d_forward``, and the converted model's branch convs, with half the
channels or half the height, fall under that line far more often than the original's) and
``onednn`` (every conv3d on oneDNN, ``octify.nn.onednn``).

    python benchmarks/video.py [--iters 7] [--frames 8] [--size 112] [--threads N]
"""

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from result_table import ResultTable  # noqa: E402
from timing import alternate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    model = r3d_18().eval()
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = octify.convert(model, example_inputs=x, alpha=args.alpha).eval()
    record = octify.record_of(converted)
    macs0, macs1 = octify.profile(model, x).macs, octify.profile(converted, x).macs
    print(
        f"r3d_18, input {tuple(x.shape)}, alpha {args.alpha:g}: {len(record.converted)} of {len(record.convs)} Conv3d octave; "
        f"MACs {macs0 / 1e9:.2f} G -> {macs1 / 1e9:.2f} G ({macs1 / macs0:.2f}x)"
    )
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, "
          f"{args.iters} alternated iterations after {args.warmup} warm-up")
    table = ResultTable("video", ["layout", "conv3d", "original (ms)", "converted (ms)", "converted / original (run 1 / run 2)"], "--:::")
    for layout in ("preserve", "channels_last"):
        for kernel in ("torch", "onednn"):
            a = octify.freeze(model, memory_format=layout, conv3d=kernel)
            b = octify.freeze(converted, memory_format=layout, conv3d=kernel)
            xi = x.contiguous(memory_format=torch.channels_last_3d) if layout == "channels_last" else x
            runs = [alternate(lambda: a(xi), lambda: b(xi), args.iters, warmup=args.warmup) for _ in range(2)]
            table.row(layout, kernel, f"{runs[0][0]:.0f}", f"{runs[0][1]:.0f}", f"{runs[0][2]:.2f} / {runs[1][2]:.2f}")
    table.note(f"r3d_18 on one {'x'.join(map(str, x.shape))} clip, alpha {args.alpha:g}, {torch.get_num_threads()} threads; "
               f"MACs {macs0 / 1e9:.2f} G -> {macs1 / 1e9:.2f} G; {args.iters} alternated iterations after {args.warmup} warm-up, twice.")
    table.save(unless="" if (args.frames, args.size, args.alpha) == (8, 112, 0.5) else "other settings than the default")


if __name__ == "__main__":
    main()
