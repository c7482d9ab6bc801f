"""Realign: move an octave pair from one channel partition to another.

Inserted by the conversion pass where two pairs of different partitions meet (a residual sum
of branches converted at different alphas, a grouped conv that needs the same number of low
channels in every group). Only the channels that change branch are resampled.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from ._resample import downsample, reorder, sort_order, upsample_to
from .partition import Partition

# Shape-dependent helpers stay one call when torch.fx traces a converted model again.
torch.fx.wrap("downsample")
torch.fx.wrap("reorder")
torch.fx.wrap("upsample_to")

__all__ = ["Realign"]


class Realign(nn.Module):
    """Move a pair from one partition to another, resampling only the channels that change branch.

    >>> import torch
    >>> src, dst = Partition((0, 1, 2), (3,)), Partition((0, 1), (2, 3))
    >>> h, l = Realign(src, dst, octave=2)((torch.randn(1, 3, 8, 8), torch.randn(1, 1, 4, 4)))
    >>> tuple(h.shape), tuple(l.shape)
    ((1, 2, 8, 8), (1, 2, 4, 4))
    """

    def __init__(self, src: Partition, dst: Partition, octave: int) -> None:
        super().__init__()
        self.src, self.dst, self.octave = src, dst, octave
        pos_h = {c: i for i, c in enumerate(src.high)}
        pos_l = {c: i for i, c in enumerate(src.low)}
        dst_high, dst_low = set(dst.high), set(dst.low)
        keep_h = [c for c in src.high if c in dst_high]
        to_low = [c for c in src.high if c in dst_low]
        keep_l = [c for c in src.low if c in dst_low]
        to_high = [c for c in src.low if c in dst_high]
        idx = lambda pos, cs: torch.tensor([pos[c] for c in cs], dtype=torch.long)  # noqa: E731
        self.register_buffer("_keep_h", idx(pos_h, keep_h), persistent=False)
        self.register_buffer("_to_low", idx(pos_h, to_low), persistent=False)
        self.register_buffer("_keep_l", idx(pos_l, keep_l), persistent=False)
        self.register_buffer("_to_high", idx(pos_l, to_high), persistent=False)
        self._moves_up, self._moves_down = bool(to_high), bool(to_low)  # static: traced graphs branch on neither
        self.register_buffer("_high_order", sort_order(keep_h + to_high), persistent=False)
        self.register_buffer("_low_order", sort_order(keep_l + to_low), persistent=False)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_moves_up" not in self.__dict__:  # saved by octify 0.1.0
            self._moves_up, self._moves_down = bool(self._to_high.numel()), bool(self._to_low.numel())

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        h, l = x
        hi = [h.index_select(1, self._keep_h)]
        if self._moves_up:
            hi.append(upsample_to(l.index_select(1, self._to_high), list(h.shape[2:])))
        lo = [l.index_select(1, self._keep_l)]
        if self._moves_down:
            lo.append(downsample(h.index_select(1, self._to_low), self.octave))
        return reorder(torch.cat(hi, 1), self._high_order), reorder(torch.cat(lo, 1), self._low_order)

    def extra_repr(self) -> str:
        return f"moves {self.src.moved(self.dst)} channels, octave={self.octave}"
