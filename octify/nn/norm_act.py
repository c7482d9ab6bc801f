"""OctNormAct: a batch norm followed by dropout and an activation, per octave branch (the
norm-act layers of timm, ``BatchNormAct2d``, as one octave layer)."""

from __future__ import annotations

import copy
from typing import Tuple

from torch import Tensor, nn

from .batchnorm import OctBatchNorm2d
from .partition import Partition

__all__ = ["OctNormAct"]


class OctNormAct(nn.Module):
    """``act(drop(bn(x)))`` on each branch of a pair: ``bn`` an OctBatchNorm2d, ``drop`` and ``act``
    shared by both branches (they hold no per-channel state).

    >>> import torch
    >>> layer = OctNormAct(OctBatchNorm2d(8, alpha=0.5), torch.nn.Identity(), torch.nn.ReLU())
    >>> h, l = layer((torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)))
    >>> bool((h >= 0).all() and (l >= 0).all())
    True
    """

    def __init__(self, bn: OctBatchNorm2d, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.bn, self.drop, self.act = bn, drop, act

    @classmethod
    def from_norm_act(cls, module: nn.BatchNorm2d, partition: Partition) -> "OctNormAct":
        """Split a BatchNorm2d subclass with ``drop`` and ``act`` submodules (timm's BatchNormAct2d)."""
        return cls(OctBatchNorm2d.from_bn(module, partition), copy.deepcopy(module.drop), copy.deepcopy(module.act))

    def forward(self, x: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
        y = self.bn(x)
        if not isinstance(y, tuple):
            raise ValueError("OctNormAct: expected a (high, low) pair")
        return self.act(self.drop(y[0])), self.act(self.drop(y[1]))
