"""Small modules the conversion pass inserts besides the public octave layers."""

from __future__ import annotations

from typing import Tuple, Union

import torch
from torch import Tensor, nn

from .nn._resample import downsample, reorder, sort_order, upsample_to
from .nn.partition import Partition


class ChannelMerge(nn.Module):
    """Concatenate same-sized high and low parts over dim 1 in original channel order (after global pooling)."""

    def __init__(self, partition: Partition) -> None:
        super().__init__()
        self.partition = partition
        self.register_buffer("_order", sort_order(list(partition.high) + list(partition.low)), persistent=False)

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tensor:
        return reorder(torch.cat([x[0], x[1]], 1), self._order)


class ChannelSplit(nn.Module):
    """Split a per-channel tensor (N, C, 1, 1) by a partition, without resampling."""

    def __init__(self, partition: Partition) -> None:
        super().__init__()
        self.partition = partition
        self.register_buffer("_high", torch.tensor(partition.high, dtype=torch.long), persistent=False)
        self.register_buffer("_low", torch.tensor(partition.low, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return x.index_select(1, self._high), x.index_select(1, self._low)


class Realign(nn.Module):
    """Move a pair from one partition to another, resampling only the channels that change branch."""

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
        self.register_buffer("_high_order", sort_order(keep_h + to_high), persistent=False)
        self.register_buffer("_low_order", sort_order(keep_l + to_low), persistent=False)

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        h, l = x
        hi = [h.index_select(1, self._keep_h)]
        if self._to_high.numel():
            hi.append(upsample_to(l.index_select(1, self._to_high), [h.shape[-2], h.shape[-1]]))
        lo = [l.index_select(1, self._keep_l)]
        if self._to_low.numel():
            lo.append(downsample(h.index_select(1, self._to_low), self.octave))
        return reorder(torch.cat(hi, 1), self._high_order), reorder(torch.cat(lo, 1), self._low_order)

    def extra_repr(self) -> str:
        return f"moves {self.src.moved(self.dst)} channels, octave={self.octave}"


class SharedStochasticDepth(nn.Module):
    """torchvision's StochasticDepth for a pair: one drop decision per sample for both branches."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]]) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if not self.training or self.p == 0.0:
            return x
        ref = x if isinstance(x, Tensor) else x[0]
        size = [ref.shape[0], 1, 1, 1] if self.mode == "row" else [1, 1, 1, 1]
        survival = 1.0 - self.p
        noise = ref.new_empty(size).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        if isinstance(x, Tensor):
            return x * noise
        return x[0] * noise, x[1] * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
