"""OctConv1d and OctConv3d: the octave convolution on audio / time series and on video.

The same layer as :class:`~octify.nn.OctConv2d` (``OctConvNd``: one home for its weights,
kernels and checks), over one or three spatial axes. ``OctConv1d``: the octave halves the one
axis. ``OctConv3d`` on (N, C, T, H, W): the octave halves H and W and keeps time at full
resolution (the paper's video setting: "down one octave" is a (1, 2, 2) average pooling);
``octave_time=True`` takes time down too (a (2, 2, 2) pooling). Both are exact at ``octave=1``.
"""

from typing import Optional, Tuple, Union

import torch
from torch import nn

from .octconv import OctConvNd
from .partition import AlphaLike, Partition

__all__ = ["OctConv1d", "OctConv3d"]

_IntOr1 = Union[int, Tuple[int]]
_IntOr3 = Union[int, Tuple[int, int, int]]


class OctConv1d(OctConvNd):
    """Octave convolution shaped like ``nn.Conv1d``: the low branch is one octave down the one axis.

    >>> import torch
    >>> conv = OctConv1d(3, 10, 5, padding=2, alpha=(0.0, 0.5))
    >>> high, low = conv(torch.randn(2, 3, 101))
    >>> tuple(high.shape), tuple(low.shape)
    ((2, 5, 101), (2, 5, 51))
    """

    _ND = 1
    _NAME = "OctConv1d"
    _CONV = nn.Conv1d
    _LAYOUT = "N, C, L"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOr1,
        stride: _IntOr1 = 1,
        padding: Union[_IntOr1, str] = 0,
        dilation: _IntOr1 = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        alpha: AlphaLike = 0.5,
        octave: int = 2,
        stride_mode: str = "conv",
        in_partition: Optional[Partition] = None,
        out_partition: Optional[Partition] = None,
    ) -> None:
        nn.Module.__init__(self)
        self._build(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype,
            alpha, octave, stride_mode, in_partition, out_partition, 1,
        )
        self.reset_parameters()

    @classmethod
    def from_conv(
        cls, conv: nn.Conv1d, *, alpha: AlphaLike = 0.5, octave: int = 2, stride_mode: str = "conv",
        in_partition: Optional[Partition] = None, out_partition: Optional[Partition] = None,
    ) -> "OctConv1d":
        """Build the octave layer of ``conv``, slicing its weight and bias into the paths (exact at ``octave=1``)."""
        return cls._from_conv(conv, alpha, octave, stride_mode, in_partition, out_partition, 1)


class OctConv3d(OctConvNd):
    """Octave convolution shaped like ``nn.Conv3d`` on (N, C, T, H, W) maps: the low branch is one
    octave down H and W, time kept (``octave_time=True``: time down too).

    >>> import torch
    >>> conv = OctConv3d(3, 10, 3, padding=1, alpha=(0.0, 0.5))
    >>> high, low = conv(torch.randn(2, 3, 4, 9, 9))
    >>> tuple(high.shape), tuple(low.shape)
    ((2, 5, 4, 9, 9), (2, 5, 4, 5, 5))
    """

    _ND = 3
    _NAME = "OctConv3d"
    _CONV = nn.Conv3d
    _LAYOUT = "N, C, T, H, W"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOr3,
        stride: _IntOr3 = 1,
        padding: Union[_IntOr3, str] = 0,
        dilation: _IntOr3 = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        alpha: AlphaLike = 0.5,
        octave: int = 2,
        octave_time: bool = False,
        stride_mode: str = "conv",
        in_partition: Optional[Partition] = None,
        out_partition: Optional[Partition] = None,
    ) -> None:
        nn.Module.__init__(self)
        self._build(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype,
            alpha, octave, stride_mode, in_partition, out_partition, _time_axes(octave_time),
        )
        self.reset_parameters()

    @property
    def octave_time(self) -> bool:
        """Whether the low branch is one octave down in time too (else only in H and W)."""
        return self._axes == 3

    @classmethod
    def from_conv(
        cls, conv: nn.Conv3d, *, alpha: AlphaLike = 0.5, octave: int = 2, octave_time: bool = False, stride_mode: str = "conv",
        in_partition: Optional[Partition] = None, out_partition: Optional[Partition] = None,
    ) -> "OctConv3d":
        """Build the octave layer of ``conv``, slicing its weight and bias into the paths (exact at ``octave=1``)."""
        return cls._from_conv(conv, alpha, octave, stride_mode, in_partition, out_partition, _time_axes(octave_time))

    def extra_repr(self) -> str:
        return super().extra_repr() + (", octave_time=True" if self.octave_time else "")


OctConv3d.__jit_unused_properties__ = OctConvNd.__jit_unused_properties__ + ["octave_time"]


def _time_axes(octave_time: bool) -> int:
    if not isinstance(octave_time, bool):
        raise ValueError(f"OctConv3d: octave_time must be True or False, found {octave_time!r}")
    return 3 if octave_time else 2
