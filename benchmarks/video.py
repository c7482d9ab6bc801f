"""r3d_18 (torchvision's 3-D ResNet-18 for video) vs its octave conversion: CPU, float32, eval, no_grad.

The converted model is ``octify.convert(r3d_18, alpha=0.5)``: OctConv3d layers with the octave
on H and W, time kept at full resolution. Both models run alternately in one loop (which goes
first alternates too) on one 1 x 3 x 8 x 112 x 112 clip; the table gives the median time of
each and the median of the per-iteration ratios, which cancels most of the drift of a shared
machine. MACs are counted by ``octify.profile`` (torch.utils.flop_counter, 2 FLOPs per MAC;
pooling and upsampling are not MACs). Rows for both 5-D layouts: contiguous (NCDHW, what
``octify.convert`` leaves) and channels_last_3d (weights and input converted by the user); and
both again with every conv3d of both models sent to oneDNN (``torch.mkldnn_convolution``):
at batch 1 PyTorch runs a Conv3d whose N*C*T*H is at most 20480 with its slow im2col kernel
(``slow_conv3d_forward``), and the converted model's branch convs, with half the channels or
half the height, fall under that threshold more often than the original's.

    python benchmarks/video.py [--iters 7] [--frames 8] [--size 112] [--threads N]
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import octify  # noqa: E402


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
    print()
    print("| layout | original (ms) | converted (ms) | converted / original (median of ratios) |")
    print("|---|---|---|---|")
    for layout, onednn in (("contiguous", False), ("channels_last_3d", False), ("contiguous", True), ("channels_last_3d", True)):
        fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
        F.conv3d = _onednn_conv3d if onednn else _CONV3D
        a, b = model.to(memory_format=fmt), converted.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        ta, tb, ratios = [], [], []
        with torch.no_grad():
            for _ in range(args.warmup):
                a(xi)
                b(xi)
            for i in range(args.iters):
                pair = [(a, ta), (b, tb)] if i % 2 == 0 else [(b, tb), (a, ta)]
                for m, times in pair:
                    t0 = time.perf_counter()
                    m(xi)
                    times.append(time.perf_counter() - t0)
                ratios.append(tb[-1] / ta[-1])
        print(f"| {layout}{', oneDNN for every conv3d' if onednn else ''} | {statistics.median(ta) * 1e3:.0f} | {statistics.median(tb) * 1e3:.0f} | {statistics.median(ratios):.2f} |")
    F.conv3d = _CONV3D
    model.to(memory_format=torch.contiguous_format)


_CONV3D = F.conv3d


def _onednn_conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """F.conv3d through oneDNN whatever the size (nn.Conv3d and OctConv3d both call F.conv3d)."""
    three = lambda v: [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v)] * 3  # noqa: E731
    if isinstance(padding, str) or x.dtype != torch.float32 or x.device.type != "cpu":
        return _CONV3D(x, weight, bias, stride, padding, dilation, groups)
    return torch.mkldnn_convolution(x, weight, bias, three(padding), three(stride), three(dilation), groups)


if __name__ == "__main__":
    main()
