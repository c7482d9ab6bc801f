"""Facts about convolutions that the layers, the pass and the report share: output sizes, the
low grid, padding, and which convs are depthwise. One home each."""

from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

from torch.nn.modules.utils import _pair

__all__ = ["low_size", "conv_out", "same_padding", "resolve_padding", "conv_padding", "is_depthwise", "depthwise_shape"]


def low_size(size: int, octave: int) -> int:
    """The low grid of a ``size``-pixel axis: ceil(size / octave), so odd sizes round-trip."""
    return (size + octave - 1) // octave


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output size of a convolution (or pooling) along one axis, as torch computes it."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def same_padding(kernel_size: Sequence[int], dilation: Sequence[int]) -> Tuple[Tuple[int, ...], bool]:
    """``padding='same'`` as numbers: the padding before each axis, and whether it is symmetric
    (an even effective kernel pads one more pixel after, which a low grid cannot follow)."""
    totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    return tuple(t // 2 for t in totals), all(t % 2 == 0 for t in totals)


def resolve_padding(
    padding: Union[int, Tuple[int, int], str], kernel_size: Tuple[int, int], dilation: Tuple[int, int],
    stride: Tuple[int, int], who: str,
) -> Tuple[int, int]:
    """An octave layer's padding as numbers; 'same' only where it is symmetric and unstrided."""
    if not isinstance(padding, str):
        return _pair(padding)
    if padding == "valid":
        return (0, 0)
    if padding != "same":
        raise ValueError(f"{who}: padding must be an int, a pair, 'same' or 'valid', found {padding!r}")
    pads, symmetric = same_padding(kernel_size, dilation)
    if not symmetric:
        raise ValueError(
            f"{who}: padding='same' needs an odd kernel, found an even kernel: kernel_size={kernel_size} "
            f"dilation={dilation}; pass explicit padding"
        )
    if any(s != 1 for s in stride):
        raise ValueError(f"{who}: padding='same' is not supported for strided convolutions (stride={stride})")
    return pads


def conv_padding(conv: Any) -> Tuple[int, int]:
    """The padding before each axis of a conv or octave conv (1-, 2- or 3-D), 'same' and 'valid' as numbers."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0,) * len(conv.kernel_size)
        return same_padding(conv.kernel_size, conv.dilation)[0]
    return tuple(conv.padding)  # type: ignore[return-value]


def depthwise_shape(in_channels: int, out_channels: int, groups: int) -> bool:
    """One input channel per group and as many outputs: each channel convolved alone."""
    return groups > 1 and groups == in_channels == out_channels


def is_depthwise(conv: Any) -> bool:
    """Whether a Conv2d or OctConv2d is depthwise (its octave form drops the cross paths)."""
    return depthwise_shape(conv.in_channels, conv.out_channels, conv.groups)
