"""OctConvTranspose2d: a transposed convolution with octave paths (decoders' learned upsampling)."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ._common import low_size
from ._resample import add_upsampled, check_low, downsample, fx_tracing, upsample_to
from .partition import Partition

# Shape-dependent helpers stay one call when torch.fx traces a converted model again.
torch.fx.wrap("add_upsampled")
torch.fx.wrap("downsample")
torch.fx.wrap("upsample_to")

__all__ = ["OctConvTranspose2d", "transposed_out"]

_Pair = Union[Tuple[Tensor, Tensor], Tensor]


def transposed_out(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """Output size of a transposed convolution along one axis, as torch computes it."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


class OctConvTranspose2d(nn.Module):
    """``nn.ConvTranspose2d`` (ungrouped) between octave pairs: the same four paths as OctConv2d,
    H->L on the pooled high input, L->H upsampled to the high output; exact at octave 1.

    >>> import torch
    >>> up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
    >>> oct_up = OctConvTranspose2d.from_conv(up, Partition.split(8, 0.5), Partition.split(4, 0.5), octave=1)
    >>> x = torch.randn(1, 8, 5, 5)
    >>> h, l = oct_up((x[:, :4], x[:, 4:]))
    >>> torch.allclose(torch.cat([h, l], 1), up(x), atol=1e-6)
    True
    """

    def __init__(self, conv: nn.ConvTranspose2d, in_partition: Partition, out_partition: Partition, octave: int = 2) -> None:
        super().__init__()
        if type(conv).forward is not nn.ConvTranspose2d.forward or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("OctConvTranspose2d: expected an ungrouped nn.ConvTranspose2d with zero padding")
        self.in_partition, self.out_partition, self.octave = in_partition, out_partition, octave
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = _pair(conv.kernel_size)
        self.stride, self.padding = _pair(conv.stride), _pair(conv.padding)
        self.output_padding, self.dilation = _pair(conv.output_padding), _pair(conv.dilation)
        w = conv.weight.detach()  # (in, out, kh, kw)
        b = None if conv.bias is None else conv.bias.detach()

        def path(rows: Tuple[int, ...], cols: Tuple[int, ...]) -> Optional[nn.Parameter]:
            if not rows or not cols:
                return None
            return nn.Parameter(w[list(rows)][:, list(cols)].clone())

        pin, pout = in_partition, out_partition
        self.weight_hh, self.weight_hl = path(pin.high, pout.high), path(pin.high, pout.low)
        self.weight_lh, self.weight_ll = path(pin.low, pout.high), path(pin.low, pout.low)
        self.bias_h = nn.Parameter(b[list(pout.high)].clone()) if b is not None and pout.high else None
        self.bias_l = nn.Parameter(b[list(pout.low)].clone()) if b is not None and pout.low else None
        self.train(conv.training)

    @classmethod
    def from_conv(
        cls, conv: nn.ConvTranspose2d, in_partition: Partition, out_partition: Partition, octave: int = 2
    ) -> "OctConvTranspose2d":
        return cls(conv, in_partition, out_partition, octave)

    def _up(self, x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, 1, self.dilation)

    def out_size(self, h: int, w: int) -> List[int]:
        k, s, p, op, d = self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation
        return [transposed_out(h, k[0], s[0], p[0], op[0], d[0]), transposed_out(w, k[1], s[1], p[1], op[1], d[1])]

    def keeps_grid(self, h: int, w: int) -> bool:
        """Whether the low paths of a high input of ``h`` x ``w`` land on the output's low grid."""
        low_out = self.out_size(low_size(h, self.octave), low_size(w, self.octave))
        return low_out == [low_size(s, self.octave) for s in self.out_size(h, w)]

    def forward(self, x: _Pair) -> _Pair:
        pin = self.in_partition
        if isinstance(x, tuple):
            xh, xl = x[0], x[1]
            if not fx_tracing():
                check_low(xh, xl, self.octave, "OctConvTranspose2d input")
        else:
            xh, xl = (x, None) if not pin.low else (None, x) if not pin.high else (None, None)
            if xh is None and xl is None:
                raise ValueError("OctConvTranspose2d: expected a (high, low) pair, found a single Tensor")
        ref = xh if xh is not None else xl
        scale = 1 if xh is not None else self.octave
        hw = self.out_size(ref.shape[-2] * scale, ref.shape[-1] * scale)
        yh: Optional[Tensor] = None
        yl: Optional[Tensor] = None
        if self.weight_hh is not None and xh is not None:
            yh = self._up(xh, self.weight_hh, self.bias_h)
        if self.weight_lh is not None and xl is not None:
            lh = self._up(xl, self.weight_lh, self.bias_h if yh is None else None)
            yh = upsample_to(lh, hw) if yh is None else add_upsampled(yh, lh, self.octave)
        if self.weight_ll is not None and xl is not None:
            yl = self._up(xl, self.weight_ll, self.bias_l)
        if self.weight_hl is not None and xh is not None:
            hl = self._up(downsample(xh, self.octave), self.weight_hl, self.bias_l if yl is None else None)
            yl = hl if yl is None else yl + hl
        if yl is not None and not fx_tracing() and list(yl.shape[-2:]) != [low_size(s, self.octave) for s in hw]:
            raise ValueError(
                f"OctConvTranspose2d: the low branch comes out {yl.shape[-2]}x{yl.shape[-1]}, the octave grid of the "
                f"{hw[0]}x{hw[1]} output needs {low_size(hw[0], self.octave)}x{low_size(hw[1], self.octave)}"
            )
        if yl is None:
            return yh
        if yh is None:
            return yl
        return yh, yl

    def reset_parameters(self) -> None:
        """Initialise as nn.ConvTranspose2d would (uniform, its fan_in is the out-channel side)."""
        fan_in = self.out_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"alpha=({self.in_partition.alpha:g}, {self.out_partition.alpha:g}), octave={self.octave}"
        )
