"""ChannelMerge and ChannelSplit: a pair and a per-channel tensor, without resampling.

The conversion pass inserts them around global pooling and per-channel operands (a
squeeze-excitation scale); they are layers like the others, with stable public paths, because
saved converted models refer to them.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

__all__ = ["ChannelMerge", "ChannelSplit"]

from ._resample import reorder, sort_order
from .partition import Partition

torch.fx.wrap("reorder")  # one call when torch.fx traces a converted model again


class ChannelMerge(nn.Module):
    """Concatenate same-sized high and low parts over dim 1 in original channel order (after global pooling).

    >>> import torch
    >>> merge = ChannelMerge(Partition((0, 2), (1, 3)))
    >>> merge((torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 3.0]]))).tolist()
    [[0.0, 1.0, 2.0, 3.0]]
    """

    def __init__(self, partition: Partition) -> None:
        super().__init__()
        self.partition = partition
        self.register_buffer("_order", sort_order(list(partition.high) + list(partition.low)), persistent=False)

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tensor:
        return reorder(torch.cat([x[0], x[1]], 1), self._order)


class ChannelSplit(nn.Module):
    """Split a per-channel tensor (N, C, 1, 1) by a partition, without resampling.

    >>> import torch
    >>> h, l = ChannelSplit(Partition((0, 2), (1, 3)))(torch.arange(4.0).reshape(1, 4, 1, 1))
    >>> h.flatten().tolist(), l.flatten().tolist()
    ([0.0, 2.0], [1.0, 3.0])
    """

    def __init__(self, partition: Partition) -> None:
        super().__init__()
        self.partition = partition
        self.register_buffer("_high", torch.tensor(partition.high, dtype=torch.long), persistent=False)
        self.register_buffer("_low", torch.tensor(partition.low, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        return x.index_select(1, self._high), x.index_select(1, self._low)
