"""OctGroupNorm: group normalisation of an octave pair, whole groups on each branch."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .partition import Partition

__all__ = ["OctGroupNorm", "whole_groups"]


def whole_groups(partition: Partition, groups: int) -> Optional[Tuple[int, int]]:
    """(groups on the high branch, groups on the low branch) when every group of ``groups``
    lies wholly on one branch, else None."""
    channels = partition.channels
    if groups < 1 or channels % groups:
        return None
    per = channels // groups
    low = set(partition.low)
    n_low = 0
    for g in range(groups):
        inside = sum(1 for c in range(g * per, (g + 1) * per) if c in low)
        if inside not in (0, per):
            return None
        n_low += inside == per
    return groups - n_low, n_low


class OctGroupNorm(nn.Module):
    """GroupNorm of a (high, low) pair whose partition keeps each group on one branch: one
    GroupNorm per branch, over that branch's groups (statistics of a group never mix branches,
    as they never mix groups).

    >>> import torch
    >>> gn = OctGroupNorm.from_gn(torch.nn.GroupNorm(4, 8), Partition.split(8, 0.5))
    >>> h, l = gn((torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)))
    >>> tuple(h.shape), tuple(l.shape)
    ((2, 4, 8, 8), (2, 4, 4, 4))
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None, *,
                 partition: Partition) -> None:
        super().__init__()
        self.partition = Partition.coerce(partition, num_channels, "partition")
        split = whole_groups(self.partition, num_groups)
        if split is None:
            raise ValueError(
                f"OctGroupNorm: every one of the {num_groups} groups must lie wholly on one branch, "
                f"found low channels {self.partition.low}"
            )
        gh, gl = split
        kw = dict(eps=eps, affine=affine, device=device, dtype=dtype)
        self.num_groups, self.num_channels = num_groups, num_channels
        self.gn_h = nn.GroupNorm(gh, len(self.partition.high), **kw) if gh else None
        self.gn_l = nn.GroupNorm(gl, len(self.partition.low), **kw) if gl else None

    @classmethod
    def from_gn(cls, gn: nn.GroupNorm, partition: Partition) -> "OctGroupNorm":
        """Split ``gn`` by ``partition``, carrying its affine weights."""
        ref = gn.weight
        layer = cls(gn.num_groups, gn.num_channels, gn.eps, gn.affine,
                    device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype, partition=partition)
        with torch.no_grad():
            for sub, idx in ((layer.gn_h, layer.partition.high), (layer.gn_l, layer.partition.low)):
                if sub is not None and gn.affine:
                    sub.weight.copy_(gn.weight[list(idx)])
                    sub.bias.copy_(gn.bias[list(idx)])
        layer.train(gn.training)
        return layer

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        if self.gn_h is None or self.gn_l is None:
            raise ValueError("OctGroupNorm: this norm has a single branch; it takes a pair only when both have groups")
        return self.gn_h(x[0]), self.gn_l(x[1])

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, high={len(self.partition.high)}, low={len(self.partition.low)}"
