"""Build a small octave network from the layers and print its shapes and MACs."""
import torch
from torch import nn

from octify import OctBatchNorm2d, OctConv2d, OctaveDual

net = nn.Sequential(
    OctConv2d(3, 32, 3, padding=1, alpha=(0.0, 0.5)),
    OctBatchNorm2d(32, alpha=0.5),
    OctaveDual(nn.ReLU()),
    OctConv2d(32, 64, 3, padding=1, stride=2, alpha=0.5),
    OctaveDual(nn.ReLU()),
    OctConv2d(64, 10, 3, padding=1, alpha=(0.5, 0.0)),
).eval()
x = torch.randn(1, 3, 64, 64)
from torch.utils.flop_counter import FlopCounterMode
with torch.no_grad(), FlopCounterMode(display=False) as fc:
    y = x
    for m in net:
        y = m(y)
        shapes = [tuple(t.shape) for t in (y if isinstance(y, tuple) else (y,))]
        print(f"{type(m).__name__:15s} -> {shapes}")
print(f"MACs: {fc.get_total_flops() // 2:,}")
