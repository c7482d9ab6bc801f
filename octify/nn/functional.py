"""Functions over octave pairs that converted graphs call (stable paths: saved models refer to them)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = ["pair_size"]


def pair_size(x: Tuple[Tensor, Tensor], channels: int, dim: Optional[int] = None) -> Union[torch.Size, int]:
    """The size of the plain tensor a (high, low) pair stands for: the high branch's batch and
    spatial size, and all ``channels``; ``x.size(dim)`` with ``dim``. Reading a shape needs no merge.

    >>> pair_size((torch.zeros(2, 6, 8, 8), torch.zeros(2, 2, 4, 4)), 8)
    torch.Size([2, 8, 8, 8])
    >>> pair_size((torch.zeros(2, 6, 8, 8), torch.zeros(2, 2, 4, 4)), 8, -1)
    8
    """
    high = x[0]
    size = torch.Size([high.shape[0], channels, *high.shape[2:]])
    return size if dim is None else size[dim]
