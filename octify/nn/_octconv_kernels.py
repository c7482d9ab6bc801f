"""The forward computations of an octave conv (1-, 2- or 3-D): dense paths, 1x1 matrix products (2-D), depthwise.

Each takes the branch inputs (``xh``, ``xl``, and ``xl_lh``, the low input the L->H path
reads) and returns the branch outputs; the layer's ``forward`` picks one.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import flop_registry, register_flop_formula

from ._resample import add_upsampled, downsample, pick, reorder, upsample_to
from .onednn import onednn_applies

__all__ = ["fuse_low", "like_format", "Kernels"]

# Shape-dependent helpers stay one call when torch.fx traces a converted model again.
torch.fx.wrap("add_upsampled")
torch.fx.wrap("downsample")
torch.fx.wrap("pick")
torch.fx.wrap("_pointwise_high")
torch.fx.wrap("_pointwise_sum")
torch.fx.wrap("reorder")
torch.fx.wrap("upsample_to")


def fuse_low(weights: List[Optional[Tensor]]) -> List[Optional[Tensor]]:
    """``weights`` (as ``OctConv2d.path_tensors`` lists them) with the [hl | ll] weight filled in."""
    w_hl, w_ll = weights[2], weights[3]
    out = list(weights)
    if w_hl is not None and w_ll is not None:
        out[4] = like_format(torch.cat([w_hl, w_ll], 1), w_hl)
    return out


def like_format(t: Tensor, like: Tensor) -> Tensor:
    """``t`` (a weight made from ``like``) in ``like``'s memory format: channels-last stays so."""
    fmt = torch.channels_last if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return t.contiguous(memory_format=fmt)


def _pixels(x: Tensor) -> Tensor:
    """A channels-last (N, C, H, W) map as its (N*H*W, C) matrix (a view)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _matrix(weight: Tensor) -> Tensor:
    """A 1x1 conv weight (out, in, 1, 1) as the (in, out) matrix a pixels x channels map multiplies."""
    return weight.view(weight.shape[0], weight.shape[1]).t()


def _product(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1x1 conv of a channels-last map as its (pixels, out channels) matrix."""
    return torch.mm(_pixels(x), _matrix(weight)) if bias is None else torch.addmm(bias, _pixels(x), _matrix(weight))


def _accumulate(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``out`` (a (pixels, out channels) matrix the layer just made) plus the 1x1 conv ``weight``
    of the channels-last map ``x``, written into ``out`` (``addmm_``). In-place ops escape
    autocast: the product is taken in the dtype autocast gave ``out``."""
    return out.addmm_(_pixels(x).to(out.dtype), _matrix(weight).to(out.dtype))


def _matmul(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1x1 conv of a channels-last map as one matrix product; the result is channels-last."""
    return _product(x, weight, bias).view(x.shape[0], x.shape[2], x.shape[3], weight.shape[0]).permute(0, 3, 1, 2)


def _pointwise_high(
    xh: Optional[Tensor], w_hh: Optional[Tensor], xl: Optional[Tensor], w_lh: Optional[Tensor], bias: Optional[Tensor], octave: int,
    hw: List[int],
) -> Optional[Tensor]:
    """The high output of a 1x1 octave conv as matrix products (H->H, L->H or both).

    With both paths on an exact octave grid, the output is one buffer: the L->H product (with
    the bias, at a quarter of the pixels) written upsampled, then the H->H product accumulated
    onto it (``addmm_`` on that fresh tensor, not a view of anything). The sum would otherwise
    allocate the H->H product and the sum apiece, and a fresh multi-megabyte tensor is new pages
    for the kernel to fault in, which costs more than the arithmetic (mobilenet_v2's first
    expansion at batch 8: 1.2 ms against 10). An in-place add on a view of the product instead
    would be as fast, but TorchScript-based exporters lose in-place writes through views."""
    if (w_hh is not None and xh is not None and w_lh is not None and xl is not None
            and xl.shape[2] * octave == hw[0] and xl.shape[3] * octave == hw[1]):
        n, c, lh, lw = xl.shape[0], w_hh.shape[0], xl.shape[2], xl.shape[3]
        low = _product(xl, w_lh, bias)
        out = low.view(n * lh, 1, lw, 1, c).expand(n * lh, octave, lw, octave, c).reshape(-1, c)  # a copy: expanded dims
        out = _accumulate(out, xh, w_hh)
        return out.view(n, lh * octave, lw * octave, c).permute(0, 3, 1, 2)
    yh: Optional[Tensor] = None
    if w_hh is not None and xh is not None:
        yh = _matmul(xh, w_hh, bias)
    if w_lh is not None and xl is not None:
        lh_ = _matmul(xl, w_lh, bias if yh is None else None)
        yh = upsample_to(lh_, hw) if yh is None else add_upsampled(yh, lh_, octave)
    return yh


def _pointwise_sum(x: Tensor, w: Tensor, x2: Tensor, w2: Tensor, bias: Optional[Tensor]) -> Tensor:
    """``x`` through the 1x1 conv ``w`` (with ``bias``) plus ``x2`` through ``w2``, both
    channels-last maps of one shape, as one buffer: the first product, then the second
    accumulated onto it (``addmm_`` on that fresh tensor; H->L onto L->L)."""
    out = _accumulate(_product(x, w, bias), x2, w2)
    return out.view(x.shape[0], x.shape[2], x.shape[3], w.shape[0]).permute(0, 3, 1, 2)


@register_flop_formula(torch.ops.aten.addmm_) if torch.ops.aten.addmm_ not in flop_registry else (lambda f: f)
def _addmm_flops(self_shape: List[int], a_shape: List[int], b_shape: List[int], *args: object, **kwargs: object) -> int:
    """FLOPs of ``out.addmm_(a, b)`` as torch counts ``addmm`` (2 per multiply-add), for
    ``FlopCounterMode`` and ``octify.profile``: torch's table has the out-of-place op only, and a
    frozen model's 1x1 octave convs end in ``addmm_`` (above). Registered only where torch has none."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


class Kernels:
    """Mixin of the octave convs: the kernels their forward dispatches to (``_nd`` spatial axes,
    the octave on the last ``_axes`` of them)."""

    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], groups: int) -> Tensor:
        padding, dilation = self._geom[2], self._geom[3]
        if self.padding_mode != "zeros":
            x = F.pad(x, self._pad4, mode=self.padding_mode)
            padding = self._zeros
        if self._onednn and onednn_applies(x):
            return torch.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
        if self._nd == 2:
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        if self._nd == 3:
            return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)

    def _pool_stride(self, x: Tensor, factors: List[int]) -> Tensor:
        if all([f == 1 for f in factors]):
            return x
        if self._nd == 2:
            return F.avg_pool2d(x, factors, factors, 0, True, True)
        if self._nd == 3:
            return F.avg_pool3d(x, factors, factors, 0, True, True)
        return F.avg_pool1d(x, factors, factors, 0, True, True)

    def _forward_dense(
        self,
        xh: Optional[Tensor],
        xl: Optional[Tensor],
        xl_lh: Optional[Tensor],
        hw: List[int],
        stride: List[int],
        weights: List[Optional[Tensor]],
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        g = self.groups
        yh: Optional[Tensor] = None
        yl: Optional[Tensor] = None
        w_hh, w_lh, w_hl, w_ll, w_low, b_h, b_l = weights[0], weights[1], weights[2], weights[3], weights[4], weights[5], weights[6]
        w_lowres = weights[7]
        if w_lowres is not None and w_hh is not None and xh is not None and xl is not None:
            # merge_lh: [L->H | H->L + L->L] as one conv over [pooled high | low], then the L->H
            # part upsampled into the H->H output. Both outputs are channel slices of one buffer.
            yh = self._conv(xh, w_hh, b_h, stride, 1)
            out = self._conv(torch.cat([downsample(xh, self.octave, self._axes), xl], 1), w_lowres, weights[8], stride, 1)
            c = w_hh.shape[0]
            yh = add_upsampled(yh, out.narrow(1, 0, c), self.octave, True)
            return yh, out.narrow(1, c, out.shape[1] - c)
        if w_hh is not None and xh is not None:
            yh = self._conv(xh, w_hh, b_h, stride, g)
        if w_lh is not None and xl_lh is not None:
            lh = self._conv(xl_lh, w_lh, b_h if yh is None else None, stride, g)
            yh = upsample_to(lh, hw) if yh is None else add_upsampled(yh, lh, self.octave, True)  # yh: the H->H conv's own output
        xhl: Optional[Tensor] = None
        if (w_hl is not None or w_low is not None) and xh is not None:
            xhl = downsample(xh, self.octave, self._axes)
        if w_low is None and w_hl is not None and w_ll is not None and g == 1:
            w_low = torch.cat([w_hl, w_ll], 1)
        if w_low is not None and xhl is not None and xl is not None:
            # H->L and L->L share their output: one conv over the concatenated inputs.
            yl = self._conv(torch.cat([xhl, xl], 1), w_low, b_l, stride, 1)
        else:
            if w_ll is not None and xl is not None:
                yl = self._conv(xl, w_ll, b_l, stride, g)
            if w_hl is not None and xhl is not None:
                hl = self._conv(xhl, w_hl, b_l if yl is None else None, stride, g)
                yl = hl if yl is None else yl + hl
        return yh, yl

    def _forward_pointwise(
        self, xh: Optional[Tensor], xl: Optional[Tensor], xl_lh: Optional[Tensor], hw: List[int], weights: List[Optional[Tensor]]
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """A 1x1 stride-1 octave conv as matrix products: each path is one product over the
        pixels (a channels-last map is a pixels x channels matrix, no copy), and H->L is added
        onto L->L by the product itself (``addmm``), so the low output needs no concatenated
        input. At small batches this also skips the per-call set-up of a convolution kernel.
        The high output is one buffer (``_pointwise_high``)."""
        w_hh, w_lh, w_hl, w_ll, b_h, b_l = weights[0], weights[1], weights[2], weights[3], weights[5], weights[6]
        yl: Optional[Tensor] = None
        yh = _pointwise_high(xh, w_hh, xl_lh, w_lh, b_h, self.octave, hw)
        xhl: Optional[Tensor] = None
        if w_hl is not None and xh is not None:
            xhl = downsample(xh, self.octave, self._axes)
        if w_ll is not None and xl is not None:
            if xhl is not None and w_hl is not None:
                yl = _pointwise_sum(xl, w_ll, xhl, w_hl, b_l)
            else:
                yl = _matmul(xl, w_ll, b_l)
        elif xhl is not None and w_hl is not None:
            yl = _matmul(xhl, w_hl, b_l)
        return yh, yl

    def _forward_depthwise(
        self,
        xh: Optional[Tensor],
        xl: Optional[Tensor],
        xl_lh: Optional[Tensor],
        hw: List[int],
        stride: List[int],
        pool: bool,
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        w_h, w_l = self.weight_h, self.weight_l
        yh: Optional[Tensor] = None
        low_all: Optional[Tensor] = None
        if w_h is not None and xh is not None:
            yh = self._conv(pick(xh, self._hh_sel, self._hh_at), w_h, self.bias_h, stride, w_h.shape[0])
        if w_l is not None:
            parts: List[Tensor] = []  # in the order of the low conv's channels: pooled high ones, then the low input
            if xh is not None and self._n_hl > 0:
                parts.append(downsample(pick(xh, self._hl_sel, self._hl_at), self.octave, self._axes))
            if xl is not None:
                parts.append(xl)
            low_in = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            low_all = self._conv(low_in, w_l, self.bias_l, stride, w_l.shape[0])
        if self._same:
            return yh, low_all
        yl: Optional[Tensor] = None
        if low_all is not None:
            if len(self._lh_pos) > 0:
                if pool and xl_lh is not None and w_l is not None:
                    # Strided pool mode: L->H channels are convolved on the low input pooled by
                    # stride / octave (the pooled high grid), as in the dense L->H path.
                    b_l = self.bias_l
                    lh = self._conv(
                        pick(xl_lh, self._lh_in_sel, self._lh_in_at), w_l.index_select(0, self._lh_sel),
                        None if b_l is None else b_l.index_select(0, self._lh_sel), stride, len(self._lh_pos),
                    )
                else:
                    lh = pick(low_all, self._lh_sel, self._lh_at)
                up = upsample_to(lh, hw)
                yh = up if yh is None else reorder(torch.cat([yh, up], 1), self._high_order)
            if len(self._ll_pos) > 0:
                yl = reorder(pick(low_all, self._ll_sel, self._ll_at), self._low_order)
        return yh, yl
