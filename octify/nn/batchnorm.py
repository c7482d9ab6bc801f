"""OctBatchNorm1d / 2d / 3d: one batch norm per octave branch (Chen et al., 2019)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .octconv import OctaveInput, OctaveOutput
from .partition import Partition, parse_alpha

__all__ = ["OctBatchNorm1d", "OctBatchNorm2d", "OctBatchNorm3d"]


class OctBatchNormNd(nn.Module):
    """Batch normalisation of an octave pair: ``bn_h`` on the high branch, ``bn_l`` on the low one,
    each a ``_BN`` (the torch.nn batch norm of the subclass's dimension)."""

    _BN: type = nn.BatchNorm2d
    _NAME = "OctBatchNorm2d"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        alpha: float = 0.5,
        partition: Optional[Partition] = None,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"{self._NAME}: num_features must be a positive integer, found {num_features!r}")
        self.num_features = num_features
        self.partition = (
            Partition.split(num_features, parse_alpha(alpha)[1])
            if partition is None
            else Partition.coerce(partition, num_features, "partition")
        )
        kw = dict(eps=eps, momentum=momentum, affine=affine, track_running_stats=track_running_stats, device=device, dtype=dtype)
        nh, nl = len(self.partition.high), len(self.partition.low)
        self._nh, self._nl = nh, nl  # plain ints for TorchScript (it cannot read a NamedTuple's fields)
        self._name = self._NAME
        self.bn_h = self._BN(nh, **kw) if nh else None
        self.bn_l = self._BN(nl, **kw) if nl else None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_name", type(self)._NAME)  # saved by octify 0.2 and before

    @classmethod
    def from_bn(cls, bn: nn.Module, partition: Union[Partition, tuple]) -> "OctBatchNormNd":
        """Split ``bn`` by ``partition``, carrying weights, running statistics and the batch counter."""
        if not isinstance(bn, cls._BN):
            raise TypeError(f"{cls._NAME}.from_bn expects an nn.{cls._BN.__name__}, found {type(bn).__name__}")
        ref = bn.weight if bn.weight is not None else bn.running_mean
        layer = cls(
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
            device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype, partition=partition,
        )
        with torch.no_grad():
            for sub, idx in ((layer.bn_h, layer.partition.high), (layer.bn_l, layer.partition.low)):
                if sub is None:
                    continue
                index = list(idx)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    src = getattr(bn, name)
                    if src is not None:
                        getattr(sub, name).copy_(src[index])
                if bn.num_batches_tracked is not None:
                    sub.num_batches_tracked.copy_(bn.num_batches_tracked)
        layer.train(bn.training)
        return layer

    def forward(self, x: OctaveInput) -> OctaveOutput:
        # Submodules are read as ``self.bn_*`` (not through locals) so that TorchScript can call
        # them, and the ``is None`` tests fold away on a module whose branch is absent.
        if not isinstance(x, tuple):
            if self.bn_l is None:
                if self.bn_h is not None:
                    return self.bn_h(x)
            elif self.bn_h is None:
                return self.bn_l(x)
            raise ValueError(
                "{}: expected a (high, low) pair ({} + {} channels), found a single Tensor".format(
                    self._name, self._nh, self._nl
                )
            )
        if self.bn_h is None or self.bn_l is None:
            raise ValueError("{}: this norm has a single branch and takes a plain Tensor, found a pair".format(self._name))
        return self.bn_h(x[0]), self.bn_l(x[1])

    def extra_repr(self) -> str:
        return f"{self.num_features}, high={len(self.partition.high)}, low={len(self.partition.low)}"


class OctBatchNorm2d(OctBatchNormNd):
    """Batch normalisation of an octave pair of 2-D maps: ``bn_h`` on the high branch, ``bn_l`` on the low one.

    >>> import torch
    >>> bn = OctBatchNorm2d(8, alpha=0.5)
    >>> h, l = bn((torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)))
    >>> tuple(h.shape), tuple(l.shape)
    ((2, 4, 8, 8), (2, 4, 4, 4))
    """

    _BN = nn.BatchNorm2d
    _NAME = "OctBatchNorm2d"


class OctBatchNorm1d(OctBatchNormNd):
    """Batch normalisation of an octave pair of 1-D maps (N, C, L), one ``nn.BatchNorm1d`` per branch.

    >>> import torch
    >>> h, l = OctBatchNorm1d(8, alpha=0.5)((torch.randn(2, 4, 16), torch.randn(2, 4, 8)))
    >>> tuple(h.shape), tuple(l.shape)
    ((2, 4, 16), (2, 4, 8))
    """

    _BN = nn.BatchNorm1d
    _NAME = "OctBatchNorm1d"


class OctBatchNorm3d(OctBatchNormNd):
    """Batch normalisation of an octave pair of 3-D maps (N, C, T, H, W), one ``nn.BatchNorm3d`` per branch.

    >>> import torch
    >>> h, l = OctBatchNorm3d(8, alpha=0.5)((torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 4, 4)))
    >>> tuple(h.shape), tuple(l.shape)
    ((2, 4, 3, 8, 8), (2, 4, 3, 4, 4))
    """

    _BN = nn.BatchNorm3d
    _NAME = "OctBatchNorm3d"
