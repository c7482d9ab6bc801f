"""Moving tensors between the high and the low grid.

The low grid of an H x W map is ceil(H/octave) x ceil(W/octave): average pooling uses
``ceil_mode`` (the last window averages what exists) and nearest upsampling targets the exact
high size, so odd sizes round-trip. With octave == 1 both are the identity, which keeps every
octave layer exact against its plain original.
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import low_size


def downsample(x: Tensor, factor: int) -> Tensor:
    """Average-pool by ``factor`` onto the ceil grid; identity for ``factor == 1``."""
    if factor == 1:
        return x
    if factor == 2 and x.dim() == 4 and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0 and x.is_contiguous():
        # NCHW 2x2 pooling as two strided adds: about 4x faster on CPU than avg_pool2d, whose
        # NCHW kernel is slow (its channels_last kernel is fast, so channels_last stays there).
        n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        rows = x.view(n, c, h // 2, 2 * w)
        pairs = (rows.narrow(3, 0, w) + rows.narrow(3, w, w)).view(n, c, h // 2, w // 2, 2)
        return (pairs.select(4, 0) + pairs.select(4, 1)).mul_(0.25)
    return F.avg_pool2d(x, factor, factor, 0, True, True)


def upsample_to(x: Tensor, size: List[int]) -> Tensor:
    """Nearest upsampling to exactly ``size`` (H, W); identity when the size already matches."""
    if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
        return x
    return F.interpolate(x, size=(size[0], size[1]), mode="nearest")


def add_upsampled(high: Tensor, low: Tensor, octave: int) -> Tensor:
    """``high + upsample(low)`` to high's size. Outside autograd, when high's size is an exact
    multiple of low's, the sum is written into ``high`` without materialising the upsampled tensor."""
    h, w = high.shape[-2], high.shape[-1]
    lh, lw = low.shape[-2], low.shape[-1]
    if lh == h and lw == w:
        return high + low if high.requires_grad else high.add_(low)
    if octave > 1 and lh * octave == h and lw * octave == w and not high.requires_grad:
        # In place, kept out of autograd so that a graph never sees an in-place write on a view.
        n, c = high.shape[0], high.shape[1]
        if high.is_contiguous() and low.is_contiguous():
            # NCHW: repeat the low columns once (a quarter-size temporary for octave 2), then
            # broadcast the rows over a (.., lh, oct, W) view: the inner loop stays contiguous.
            cols = low.unsqueeze(-1).expand(n, c, lh, lw, octave).reshape(n, c, lh, 1, w)
            high.view(n, c, lh, octave, w).add_(cols)
            return high
        elif high.is_contiguous(memory_format=torch.channels_last):
            # channels_last: one broadcast pass over a (.., lh, oct, lw, oct) view (channels innermost).
            high.view(n, c, lh, octave, lw, octave).add_(low.reshape(n, c, lh, 1, lw, 1))
            return high
    return high + upsample_to(low, [h, w])


def check_low(high: Tensor, low: Tensor, octave: int, where: str) -> None:
    """Raise a ValueError when ``low`` is not on ``high``'s low grid."""
    eh = low_size(high.shape[-2], octave)
    ew = low_size(high.shape[-1], octave)
    if low.shape[-2] != eh or low.shape[-1] != ew:
        raise ValueError(
            "{}: the low tensor must be {}x{} (ceil of the high {}x{} over octave {}), found {}x{}".format(
                where, eh, ew, high.shape[-2], high.shape[-1], octave, low.shape[-2], low.shape[-1]
            )
        )


def as_pair(x: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
    return x[0], x[1]


def sort_order(channels: List[int]) -> Tensor:
    """The index that puts ``channels`` (the original indices of a concatenation) back in
    ascending order, for :func:`reorder`; empty when they already are."""
    if channels == sorted(channels):
        return torch.empty(0, dtype=torch.long)
    return torch.tensor(sorted(range(len(channels)), key=channels.__getitem__), dtype=torch.long)


def reorder(x: Tensor, index: Tensor) -> Tensor:
    """``x.index_select(1, index)``, skipped when ``index`` is empty (meaning: already in order)."""
    if index.numel() == 0:
        return x
    return x.index_select(1, index)


def merge(high: Tensor, low: Tensor, octave: int, order: Tensor) -> Tensor:
    """Concatenate ``high`` and upsampled ``low`` over channels, then restore the plain order."""
    up = upsample_to(low, [high.shape[-2], high.shape[-1]])
    return reorder(torch.cat([high, up], 1), order)
