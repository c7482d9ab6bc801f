"""Moving tensors between the high and the low grid.

The octave acts on the trailing spatial axes of a map: the one axis of a 1-D map (N, C, L),
H and W of a 2-D map, and H and W of a 3-D map (N, C, T, H, W), time kept at full resolution
(the paper's video setting; ``OctConv3d(octave_time=True)`` takes time down too). The helpers
take that number of axes (``axes``; -1: the default for the map's dimension, :func:`octave_axes`).
The low grid of an H x W map is ceil(H/octave) x ceil(W/octave): average pooling uses
``ceil_mode`` (the last window averages what exists) and nearest upsampling targets the exact
high size, so odd sizes round-trip. With octave == 1 both are the identity, which keeps every
octave layer exact against its plain original.
"""

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import low_size


def fx_tracing() -> bool:
    """Whether torch.fx is tracing this code symbolically (sizes are Proxies, so checks on them
    are skipped: they run when the traced graph runs). False under TorchScript."""
    if torch.jit.is_scripting():
        return False
    return _fx_symbolic_tracing()


@torch.jit.unused
def _fx_symbolic_tracing() -> bool:
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def octave_axes(dim: int, axes: int = -1) -> int:
    """How many trailing axes the octave resamples on a ``dim``-D map: ``axes`` when given, else
    1 for a 1-D map (N, C, L) and 2 otherwise (H and W; time kept on a 3-D map)."""
    if axes >= 0:
        return axes
    return 1 if dim == 3 else 2


def low_shape(sizes: List[int], octave: int, axes: int) -> List[int]:
    """The low grid of a map whose spatial sizes are ``sizes``: the last ``axes`` of them ceil'd over ``octave``."""
    out: List[int] = []
    n = len(sizes)
    for i in range(n):
        out.append(low_size(sizes[i], octave) if i >= n - axes else sizes[i])
    return out


def downsample(x: Tensor, factor: int, axes: int = -1) -> Tensor:
    """Average-pool the last ``axes`` axes (-1: :func:`octave_axes`) by ``factor`` onto the ceil
    grid; identity for ``factor == 1``."""
    if factor == 1:
        return x
    d = x.dim()
    n = octave_axes(d, axes)
    if d == 4 and n == 2:
        return _down2d(x, factor)
    if d == 5 and n == 2 and x.is_contiguous():
        # Time kept: the (N, C*T, H, W) view pools exactly as the 3-D map, on the fast 2-D path.
        y = _down2d(x.view(x.shape[0], x.shape[1] * x.shape[2], x.shape[3], x.shape[4]), factor)
        return y.view(x.shape[0], x.shape[1], x.shape[2], y.shape[-2], y.shape[-1])
    k: List[int] = []
    for i in range(d - 2):
        k.append(factor if i >= d - 2 - n else 1)
    if d == 3:
        return F.avg_pool1d(x, k, k, 0, True, True)
    return F.avg_pool3d(x, k, k, 0, True, True)


def _down2d(x: Tensor, factor: int) -> Tensor:
    if factor == 2 and x.dim() == 4 and x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0 and x.is_contiguous():
        # NCHW 2x2 pooling as two strided adds: about 4x faster on CPU than avg_pool2d, whose
        # NCHW kernel is slow (its channels_last kernel is fast, so channels_last stays there).
        n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        rows = x.view(n, c, h // 2, 2 * w)
        pairs = (rows.narrow(3, 0, w) + rows.narrow(3, w, w)).view(n, c, h // 2, w // 2, 2)
        return (pairs.select(4, 0) + pairs.select(4, 1)).mul_(0.25)
    return F.avg_pool2d(x, factor, factor, 0, True, True)


def upsample_to(x: Tensor, size: List[int]) -> Tensor:
    """Nearest upsampling to exactly ``size`` (every spatial axis: (L), (H, W) or (T, H, W));
    identity when the size already matches."""
    if len(size) == 2:
        if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
            return x
        return F.interpolate(x, size=(size[0], size[1]), mode="nearest")
    if list(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="nearest")


def add_upsampled(high: Tensor, low: Tensor, octave: int, into_high: bool = False) -> Tensor:
    """``high + upsample(low)`` to high's size. When high's size is an exact multiple of low's,
    one broadcast add over a (.., lh, octave, lw, octave) view, without materialising the
    upsampled tensor; the sum keeps high's layout, with the strides of a freshly allocated tensor
    (a batch of 1 included: a stray batch stride would make later convolutions take the map for
    NCHW).

    ``into_high=True`` writes the sum into ``high``, which must be a tensor the caller just made
    and nobody else reads (a conv's output): a full-resolution map not allocated, whose fresh
    pages cost more than the add on some kernels. The result is the in-place op's own output, so
    that tracing exporters see the write in the data flow (a write through a view of ``high``
    followed by a read of ``high`` is lost by the TorchScript-based ONNX exporter)."""
    h, w = high.shape[-2], high.shape[-1]
    lh, lw = low.shape[-2], low.shape[-1]
    into_high = into_high and high.dtype == low.dtype  # a lower-precision high would keep the sum in its dtype
    if list(low.shape[2:]) == list(high.shape[2:]):
        return high.add_(low) if into_high else high + low
    if high.dim() == 5 and octave > 1 and lh * octave == h and lw * octave == w and low.shape[2] == high.shape[2] and high.is_contiguous():
        # Time kept: the same broadcast add over (N*C*T*lh, octave, lw, octave) rows.
        h5, l5 = high.reshape(-1, octave, lw, octave), low.reshape(-1, 1, lw, 1)
        return (h5.add_(l5) if into_high else h5 + l5).view(high.shape)
    if octave > 1 and lh * octave == h and lw * octave == w and high.dim() == 4:
        n, c = high.shape[0], high.shape[1]
        if high.is_contiguous(memory_format=torch.channels_last) and not high.is_contiguous():
            # NHWC memory: (N*lh, oct, lw, oct*C) rows of whole pixels, low broadcast over both octs.
            hp = high.permute(0, 2, 3, 1).reshape(n * lh, octave, lw, octave, c)
            lp = low.permute(0, 2, 3, 1).reshape(n * lh, 1, lw, 1, c)
            return (hp.add_(lp) if into_high else hp + lp).view(n, h, w, c).permute(0, 3, 1, 2)
        h4, l4 = high.reshape(n * c * lh, octave, lw, octave), low.reshape(n * c * lh, 1, lw, 1)
        into_h4 = into_high and high.is_contiguous()  # else the reshape is a copy: a write into it would not reach high
        return (h4.add_(l4) if into_h4 else h4 + l4).view(n, c, h, w)
    return high + upsample_to(low, list(high.shape[2:]))


def check_low(high: Tensor, low: Tensor, octave: int, where: str, axes: int = -1) -> None:
    """Raise a ValueError when ``low`` is not on ``high``'s low grid."""
    if high.dim() != 4 or octave_axes(high.dim(), axes) != 2:
        want = low_shape(list(high.shape[2:]), octave, octave_axes(high.dim(), axes))
        if low.dim() != high.dim() or list(low.shape[2:]) != want:
            raise ValueError(
                "{}: the low tensor's spatial sizes must be {} (the high {} over octave {}), found {}".format(
                    where, want, list(high.shape[2:]), octave, list(low.shape[2:])
                )
            )
        return
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


def run_start(positions: Sequence[int]) -> int:
    """The first of ``positions`` when they are consecutive ascending channels, else -1: such a
    selection is a view (:func:`pick`), not a gather."""
    return positions[0] if len(positions) > 0 and list(positions) == list(range(positions[0], positions[0] + len(positions))) else -1


def pick(x: Tensor, index: Tensor, start: int) -> Tensor:
    """Channels ``index`` of ``x`` (all of them, in order, when ``index`` is empty, as for
    :func:`reorder`): a narrowed view when they run consecutively from ``start`` (``run_start``
    of them, >= 0), else ``index_select``. Besides the copy, a gather over the channels of a
    channels-last map falls to a slow kernel and returns a contiguous (NCHW) map, which then
    sends every op after it down the NCHW paths."""
    if index.numel() == 0:
        return x
    if start >= 0:
        return x.narrow(1, start, index.numel())
    return x.index_select(1, index)


def merge(high: Tensor, low: Tensor, octave: int, order: Tensor) -> Tensor:
    """Concatenate ``high`` and upsampled ``low`` over channels, then restore the plain order."""
    up = upsample_to(low, list(high.shape[2:]))
    return reorder(torch.cat([high, up], 1), order)
