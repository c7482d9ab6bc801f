"""OctaveSplit and OctaveMerge: between a plain tensor and an octave pair (Chen et al., 2019)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..utils.validate import check_octave
from ._resample import check_low, downsample, fx_tracing, merge, sort_order
from .octconv import OctaveOutput
from .partition import Partition, parse_alpha

# Shape-dependent helpers stay one call when torch.fx traces a converted model again.
torch.fx.wrap("downsample")
torch.fx.wrap("merge")

__all__ = ["OctaveSplit", "OctaveMerge"]


def _partition(channels: Optional[int], alpha: float, partition: Optional[Union[Partition, tuple]], who: str) -> Partition:
    if partition is not None:
        if channels is None:
            high, low = partition
            channels = len(high) + len(low)
        return Partition.coerce(partition, channels, "partition")
    if channels is None:
        raise TypeError(f"{who} needs either channels (with alpha) or a partition")
    return Partition.split(channels, parse_alpha(alpha)[1])


class OctaveSplit(nn.Module):
    """Split a plain tensor into ``(high, low)`` by a partition; the low channels are average-pooled.

    >>> import torch
    >>> h, l = OctaveSplit(8, alpha=0.25)(torch.randn(1, 8, 7, 7))
    >>> tuple(h.shape), tuple(l.shape)
    ((1, 6, 7, 7), (1, 2, 4, 4))
    """

    def __init__(
        self, channels: Optional[int] = None, alpha: float = 0.5, *, partition: Optional[Partition] = None, octave: int = 2
    ) -> None:
        super().__init__()
        self.partition = _partition(channels, alpha, partition, "OctaveSplit")
        self.channels = self.partition.channels
        self.octave = check_octave(octave, "OctaveSplit: octave")
        self._contiguous = self.partition.is_contiguous
        self._nh, self._nl = len(self.partition.high), len(self.partition.low)
        self.register_buffer("_high", torch.tensor(self.partition.high, dtype=torch.long), persistent=False)
        self.register_buffer("_low", torch.tensor(self.partition.low, dtype=torch.long), persistent=False)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_nl", len(self.partition.low))  # saved by octify 0.1.0

    def forward(self, x: Tensor) -> OctaveOutput:
        if not fx_tracing() and (x.dim() < 3 or x.dim() > 5 or x.shape[1] != self.channels):
            raise ValueError(
                "OctaveSplit: expected an (N, {}, H, W) tensor, found shape {}".format(self.channels, list(x.shape))
            )
        if self._contiguous:
            high = x[:, : self._nh]
            low = x[:, self._nh :]
        else:
            high = x.index_select(1, self._high)
            low = x.index_select(1, self._low)
        if self._nl == 0:
            return high
        low = downsample(low, self.octave)
        if self._nh == 0:
            return low
        return high, low

    def extra_repr(self) -> str:
        return f"{self.channels}, high={len(self.partition.high)}, low={len(self.partition.low)}, octave={self.octave}"


class OctaveMerge(nn.Module):
    """Merge ``(high, low)`` into one plain tensor: low upsampled to the high size, channels in original order.

    >>> import torch
    >>> y = OctaveMerge(8, alpha=0.25)((torch.randn(1, 6, 7, 7), torch.randn(1, 2, 4, 4)))
    >>> tuple(y.shape)
    (1, 8, 7, 7)
    """

    def __init__(
        self, channels: Optional[int] = None, alpha: float = 0.5, *, partition: Optional[Partition] = None, octave: int = 2
    ) -> None:
        super().__init__()
        self.partition = _partition(channels, alpha, partition, "OctaveMerge")
        self.channels = self.partition.channels
        self.octave = check_octave(octave, "OctaveMerge: octave")
        self._nh, self._nl = len(self.partition.high), len(self.partition.low)  # ints for TorchScript
        self.register_buffer("_order", sort_order(list(self.partition.high) + list(self.partition.low)), persistent=False)

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tensor:
        if not isinstance(x, tuple):
            raise ValueError("OctaveMerge: expected a (high, low) pair, found a single Tensor")
        high, low = x[0], x[1]
        nh, nl = self._nh, self._nl
        if not fx_tracing():
            if high.shape[1] != nh or low.shape[1] != nl:
                raise ValueError(
                    "OctaveMerge: expected {} high + {} low channels, found {} + {}".format(nh, nl, high.shape[1], low.shape[1])
                )
            check_low(high, low, self.octave, "OctaveMerge")
        return merge(high, low, self.octave, self._order)

    def extra_repr(self) -> str:
        return f"{self.channels}, high={len(self.partition.high)}, low={len(self.partition.low)}, octave={self.octave}"
