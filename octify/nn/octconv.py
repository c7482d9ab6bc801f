"""OctConv2d: octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049)."""


import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from . import _eval_cache
from ._resample import add_upsampled, check_low, downsample, low_size, reorder, sort_order, upsample_to
from .partition import AlphaLike, Partition, parse_alpha

__all__ = ["OctConv2d", "OctaveInput", "OctaveOutput"]

OctaveInput = Union[Tensor, Tuple[Tensor, Tensor]]
OctaveOutput = Union[Tensor, Tuple[Tensor, Tensor]]
_IntOr2 = Union[int, Tuple[int, int]]
_SKIP_INIT = False


def _index(values: Sequence[int]) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long)


def fuse_low(weights: List[Optional[Tensor]]) -> List[Optional[Tensor]]:
    """``weights`` (as ``OctConv2d._path_tensors`` lists them) with the [hl | ll] weight filled in."""
    w_hl, w_ll = weights[2], weights[3]
    out = list(weights)
    if w_hl is not None and w_ll is not None:
        fmt = torch.channels_last if w_hl.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out[4] = torch.cat([w_hl, w_ll], 1).contiguous(memory_format=fmt)
    return out


def _pixels(x: Tensor) -> Tensor:
    """A channels-last (N, C, H, W) map as its (N*H*W, C) matrix (a view)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _matmul(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A 1x1 conv of a channels-last map as one matrix product; the result is channels-last."""
    n, h, w = x.shape[0], x.shape[2], x.shape[3]
    w2 = weight.view(weight.shape[0], weight.shape[1]).t()
    y = torch.mm(_pixels(x), w2) if bias is None else torch.addmm(bias, _pixels(x), w2)
    return y.view(n, h, w, weight.shape[0]).permute(0, 3, 1, 2)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class OctConv2d(nn.Module):
    """Octave convolution (Chen et al., 2019): four paths between a full-resolution high branch and
    a low branch one octave down, shaped like ``nn.Conv2d``.

    Input: a Tensor (all channels high, or all low when ``alpha_in == 1``) or a ``(high, low)``
    pair. Output: ``(high, low)``; a plain Tensor when ``alpha_out == 0``; the low Tensor alone
    when ``alpha_out == 1``.

    >>> import torch
    >>> conv = OctConv2d(3, 10, 3, padding=1, alpha=(0.0, 0.5))
    >>> high, low = conv(torch.randn(2, 3, 200, 200))
    >>> tuple(high.shape), tuple(low.shape)
    ((2, 5, 200, 200), (2, 5, 100, 100))
    """

    # Class-level annotations: TorchScript needs the element type of lists that may be empty.
    _ll_pos: List[int]
    _pad4: List[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _IntOr2,
        stride: _IntOr2 = 1,
        padding: Union[_IntOr2, str] = 0,
        dilation: _IntOr2 = 1,
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
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "groups" else 0):
                raise ValueError(f"OctConv2d: {name} must be a positive integer, found {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"OctConv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if isinstance(octave, bool) or not isinstance(octave, int):
            raise TypeError(f"OctConv2d: octave must be an integer >= 1, found {octave!r} ({type(octave).__name__})")
        if octave < 1:
            raise ValueError(f"OctConv2d: octave must be an integer >= 1, found {octave}")
        if stride_mode not in ("conv", "pool"):
            raise ValueError(f"OctConv2d: stride_mode must be 'conv' or 'pool', found {stride_mode!r}")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(
                f"OctConv2d: padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', found {padding_mode!r}"
            )
        alpha_in, alpha_out = parse_alpha(alpha)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size: Tuple[int, int] = _pair(kernel_size)
        self.stride: Tuple[int, int] = _pair(stride)
        if stride_mode == "pool" and any(s != 1 and s % octave for s in self.stride):
            # The L->H path pools the low input by stride / octave onto the pooled high grid.
            raise ValueError(
                f"OctConv2d: stride_mode='pool' needs each stride to be 1 or a multiple of octave ({octave}), "
                f"found stride={self.stride}; use stride_mode='conv'"
            )
        self.dilation: Tuple[int, int] = _pair(dilation)
        self.padding: Tuple[int, int] = self._resolve_padding(padding)
        self.groups = groups
        self.padding_mode = padding_mode
        self.octave = octave
        self.stride_mode = stride_mode
        self.depthwise = groups > 1 and groups == in_channels == out_channels

        split_groups = 1 if self.depthwise else groups
        self.in_partition = (
            Partition.split(in_channels, alpha_in, split_groups)
            if in_partition is None
            else Partition.coerce(in_partition, in_channels, "in_partition")
        )
        self.out_partition = (
            Partition.split(out_channels, alpha_out, split_groups)
            if out_partition is None
            else Partition.coerce(out_partition, out_channels, "out_partition")
        )
        if groups > 1 and not self.depthwise:
            for what, part in (("in_partition", self.in_partition), ("out_partition", self.out_partition)):
                if part.low_per_group(groups) is None:
                    raise ValueError(
                        f"OctConv2d: a grouped conv (groups={groups}) needs the same number of low channels in "
                        f"every group of its {what}, found low channels {part.low}"
                    )
        self.alpha_in = self.in_partition.alpha
        self.alpha_out = self.out_partition.alpha
        self.ih, self.il = len(self.in_partition.high), len(self.in_partition.low)
        self.oh, self.ol = len(self.out_partition.high), len(self.out_partition.low)
        # Reversed, doubled padding for F.pad when padding_mode is not zeros (as nn.Conv2d does).
        self._pad4 = [self.padding[1], self.padding[1], self.padding[0], self.padding[0]]

        factory = {"device": device, "dtype": dtype}
        kh, kw = self.kernel_size
        if self.depthwise:
            self._init_depthwise(bias, factory)
        else:
            g = groups

            def weight(cout: int, cin: int) -> Optional[nn.Parameter]:
                if cout == 0 or cin == 0:
                    return None
                return nn.Parameter(torch.empty(cout, cin // g, kh, kw, **factory))

            self.weight_hh = weight(self.oh, self.ih)
            self.weight_hl = weight(self.ol, self.ih)
            self.weight_lh = weight(self.oh, self.il)
            self.weight_ll = weight(self.ol, self.il)
            self.bias_h = nn.Parameter(torch.empty(self.oh, **factory)) if bias and self.oh else None
            self.bias_l = nn.Parameter(torch.empty(self.ol, **factory)) if bias and self.ol else None
            # Placeholders so that TorchScript sees one attribute set whatever the kind.
            self.weight_h = self.weight_l = None
            self._same = False
            self._ll_pos = []
            for name in ("_hh_sel", "_hl_sel", "_lh_sel", "_ll_sel", "_high_order", "_low_order"):
                self.register_buffer(name, torch.empty(0, dtype=torch.long), persistent=False)
        self.has_bias = bias
        # 1x1 dense convs that are stride-1 once pooled run as matrix products in inference (_forward_pointwise).
        self._pointwise = (
            not self.depthwise and groups == 1 and self.kernel_size == (1, 1)
            and (self.stride == (1, 1) or stride_mode == "pool") and self.padding == (0, 0) and self.dilation == (1, 1)
        )
        # Other dense ungrouped convs run H->L and L->L as one conv over a [hl | ll] weight,
        # which inference takes from a cache (the matrix-product path accumulates instead).
        self._fuses_low = not self.depthwise and groups == 1 and not self._pointwise
        self.reset_parameters()

    # -- construction helpers ------------------------------------------------------------------
    def _resolve_padding(self, padding: Union[_IntOr2, str]) -> Tuple[int, int]:
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0)
            if padding == "same":
                pads = []
                for k, d in zip(self.kernel_size, self.dilation):
                    total = d * (k - 1)
                    if total % 2:
                        raise ValueError(
                            f"OctConv2d: padding='same' needs an odd effective kernel, found kernel_size={self.kernel_size} "
                            f"dilation={self.dilation}; pass explicit padding"
                        )
                    pads.append(total // 2)
                if self.stride != (1, 1):
                    raise ValueError(f"OctConv2d: padding='same' is not supported for strided convolutions (stride={self.stride})")
                return (pads[0], pads[1])
            raise ValueError(f"OctConv2d: padding must be an int, a pair, 'same' or 'valid', found {padding!r}")
        return _pair(padding)

    def _init_depthwise(self, bias: bool, factory: dict) -> None:
        # One depthwise conv per resolution; channels that change branch go through the
        # cheaper resolution (H->L: pool then conv; L->H: conv then upsample), as the paths do.
        pin, pout = self.in_partition, self.out_partition
        high_out, low_out = set(pout.high), set(pout.low)
        hh = [c for c in pin.high if c in high_out]
        hl = [c for c in pin.high if c in low_out]
        low_res = list(pin.low) + hl  # channels the low-resolution conv computes, in this order
        self._hh = hh
        self._low_res = low_res
        kh, kw = self.kernel_size
        self.weight_hh = self.weight_hl = self.weight_lh = self.weight_ll = None
        self.weight_h = nn.Parameter(torch.empty(len(hh), 1, kh, kw, **factory)) if hh else None
        self.weight_l = nn.Parameter(torch.empty(len(low_res), 1, kh, kw, **factory)) if low_res else None
        self.bias_h = nn.Parameter(torch.empty(len(hh), **factory)) if bias and hh else None
        self.bias_l = nn.Parameter(torch.empty(len(low_res), **factory)) if bias and low_res else None
        pos_h = {c: i for i, c in enumerate(pin.high)}
        self._same = pin == pout
        self.register_buffer(
            "_hh_sel", torch.empty(0, dtype=torch.long) if len(hh) == len(pin.high) else _index([pos_h[c] for c in hh]), persistent=False
        )
        self.register_buffer("_hl_sel", _index([pos_h[c] for c in hl]), persistent=False)
        lh_pos = [i for i, c in enumerate(low_res) if c in high_out]
        ll_pos = [i for i, c in enumerate(low_res) if c in low_out]
        self._lh_pos = lh_pos
        self._ll_pos = ll_pos
        self.register_buffer("_lh_sel", _index(lh_pos), persistent=False)
        self.register_buffer(
            "_ll_sel", torch.empty(0, dtype=torch.long) if ll_pos == list(range(len(low_res))) else _index(ll_pos), persistent=False
        )
        self.register_buffer("_high_order", sort_order(hh + [low_res[i] for i in lh_pos]), persistent=False)
        self.register_buffer("_low_order", sort_order([low_res[i] for i in ll_pos]), persistent=False)

    def _path_weights(self) -> List[Tuple[str, Tensor]]:
        return [(n, p) for n, p in self.named_parameters(recurse=False) if n.startswith("weight")]

    def reset_parameters(self) -> None:
        """Initialise as the equivalent nn.Conv2d would: uniform(+-1/sqrt(fan_in)) with the full conv's fan_in."""
        if _SKIP_INIT:
            return
        fan_in = (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        with torch.no_grad():
            for p in self.parameters(recurse=False):
                p.uniform_(-bound, bound)

    # -- weight transfer -----------------------------------------------------------------------
    @torch.no_grad()
    def _load_from_dense(self, weight: Tensor, bias: Optional[Tensor]) -> None:
        pin, pout = self.in_partition, self.out_partition
        if self.depthwise:
            w = weight[:, 0]
            targets = [("weight_h", "bias_h", self._hh), ("weight_l", "bias_l", self._low_res)]
            for wname, bname, chans in targets:
                p = getattr(self, wname)
                if p is not None:
                    p.copy_(w[chans].unsqueeze(1))
                b = getattr(self, bname)
                if b is not None and bias is not None:
                    b.copy_(bias[chans])
            return
        for out_name, out_idx in (("h", pout.high), ("l", pout.low)):
            for in_name, in_idx in (("h", pin.high), ("l", pin.low)):
                p = getattr(self, f"weight_{in_name}{out_name}")
                if p is not None:
                    for rows, dst, cols in self._blocks(out_idx, in_idx):
                        p[dst] = weight.index_select(0, rows).index_select(1, cols)
        for name, idx in (("bias_h", pout.high), ("bias_l", pout.low)):
            b = getattr(self, name)
            if b is not None and bias is not None:
                b.copy_(bias[list(idx)])

    def _blocks(self, out_idx: Sequence[int], in_idx: Sequence[int]) -> List[Tuple[Tensor, slice, Tensor]]:
        """Per group: (rows of the dense weight, rows of the path weight, in-group columns).

        Partitions are sorted and groups contiguous, so each group's rows form one slice of the
        path weight."""
        g = self.groups
        cin_g, cout_g = self.in_channels // g, self.out_channels // g
        blocks, start = [], 0
        for gi in range(g):
            rows = [o for o in out_idx if o // cout_g == gi]
            cols = [i - gi * cin_g for i in in_idx if i // cin_g == gi]
            if rows:
                blocks.append((_index(rows), slice(start, start + len(rows)), _index(cols)))
                start += len(rows)
        return blocks

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        *,
        alpha: AlphaLike = 0.5,
        octave: int = 2,
        stride_mode: str = "conv",
        in_partition: Optional[Partition] = None,
        out_partition: Optional[Partition] = None,
    ) -> "OctConv2d":
        """Build the octave layer of ``conv``, slicing its weight and bias into the paths.

        >>> import torch
        >>> conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        >>> oct1 = OctConv2d.from_conv(conv, alpha=0.5, octave=1)   # octave=1: exact
        >>> x = torch.randn(1, 8, 9, 9)
        >>> h, l = oct1((x[:, :4], x[:, 4:]))
        >>> torch.allclose(torch.cat([h, l], 1), conv(x), atol=1e-5)
        True
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"OctConv2d.from_conv expects an nn.Conv2d, found {type(conv).__name__}")
        padding: Union[_IntOr2, str] = conv.padding if not isinstance(conv.padding, str) else conv.padding
        if isinstance(padding, str) and padding == "same" and conv.stride == (1, 1):
            padding = tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))  # type: ignore[assignment]
            if any(d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
                raise ValueError(f"OctConv2d.from_conv: padding='same' with an even kernel {conv.kernel_size} is not supported")
        global _SKIP_INIT
        _SKIP_INIT = True  # the weights are overwritten right below: skip the random init
        try:
            layer = cls(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding, conv.dilation, conv.groups,
                conv.bias is not None, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
                alpha=alpha, octave=octave, stride_mode=stride_mode, in_partition=in_partition, out_partition=out_partition,
            )
        finally:
            _SKIP_INIT = False
        layer._load_from_dense(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
        layer.train(conv.training)
        return layer

    @torch.no_grad()
    def to_dense_weight(self) -> Tuple[Tensor, Optional[Tensor]]:
        """The nn.Conv2d weight and bias these paths tile (inverse of ``from_conv``)."""
        ref = next(iter(self.parameters()))
        weight = torch.zeros(self.out_channels, self.in_channels // self.groups, *self.kernel_size, dtype=ref.dtype, device=ref.device)
        bias = torch.zeros(self.out_channels, dtype=ref.dtype, device=ref.device) if self.has_bias else None
        pin, pout = self.in_partition, self.out_partition
        if self.depthwise:
            for wname, bname, chans in (("weight_h", "bias_h", self._hh), ("weight_l", "bias_l", self._low_res)):
                p = getattr(self, wname)
                if p is not None:
                    weight[chans] = p
                b = getattr(self, bname)
                if b is not None and bias is not None:
                    bias[chans] = b
            return weight, bias
        for out_name, out_idx in (("h", pout.high), ("l", pout.low)):
            for in_name, in_idx in (("h", pin.high), ("l", pin.low)):
                p = getattr(self, f"weight_{in_name}{out_name}")
                if p is not None:
                    for rows, src, cols in self._blocks(out_idx, in_idx):
                        block = weight[rows]
                        block[:, cols] = p[src]
                        weight[rows] = block
        for name, idx in (("bias_h", pout.high), ("bias_l", pout.low)):
            b = getattr(self, name)
            if b is not None and bias is not None:
                bias[list(idx)] = b
        return weight, bias

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"alpha=({self.alpha_in:g}, {self.alpha_out:g}), octave={self.octave}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if not self.has_bias:
            s += ", bias=False"
        if self.stride_mode != "conv":
            s += f", stride_mode={self.stride_mode!r}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s

    # -- forward -------------------------------------------------------------------------------
    def _conv(self, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Tuple[int, int], groups: int) -> Tensor:
        if self.padding_mode != "zeros":
            return F.conv2d(F.pad(x, self._pad4, mode=self.padding_mode), weight, bias, stride, 0, self.dilation, groups)
        return F.conv2d(x, weight, bias, stride, self.padding, self.dilation, groups)

    def _split_input(self, x: OctaveInput) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        if isinstance(x, Tensor):
            if self.il == 0:
                xh: Optional[Tensor] = x
                xl: Optional[Tensor] = None
            elif self.ih == 0:
                xh = None
                xl = x
            else:
                raise ValueError(
                    "OctConv2d: expected a (high, low) pair since alpha_in={} ({} high + {} low channels), found a single Tensor".format(
                        self.alpha_in, self.ih, self.il
                    )
                )
        else:
            xh = x[0]
            xl = x[1]
            if self.il == 0:
                raise ValueError("OctConv2d: alpha_in=0, so the input must be a plain Tensor of {} channels, found a pair".format(self.ih))
            if self.ih == 0:
                raise ValueError("OctConv2d: alpha_in=1, so the input must be the low Tensor alone ({} channels), found a pair".format(self.il))
        if xh is not None:
            if xh.dim() != 4:
                raise ValueError("OctConv2d: expected 4-D (N, C, H, W) input, found {} dims".format(xh.dim()))
            if xh.shape[1] != self.ih:
                raise ValueError("OctConv2d: expected a high input with {} channels, found {}".format(self.ih, xh.shape[1]))
        if xl is not None:
            if xl.dim() != 4:
                raise ValueError("OctConv2d: expected a 4-D (N, C, H, W) low input, found {} dims".format(xl.dim()))
            if xl.shape[1] != self.il:
                raise ValueError("OctConv2d: expected a low input with {} channels, found {}".format(self.il, xl.shape[1]))
            if xh is not None:
                check_low(xh, xl, self.octave, "OctConv2d input")
        return xh, xl

    def _out_hw(self, h: int, w: int) -> List[int]:
        """Spatial size of the high output for a high input of ``h`` x ``w``."""
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        if self.stride_mode == "pool":
            h, w = low_size(h, s[0]), low_size(w, s[1])
            return [_conv_out(h, k[0], 1, p[0], d[0]), _conv_out(w, k[1], 1, p[1], d[1])]
        return [_conv_out(h, k[0], s[0], p[0], d[0]), _conv_out(w, k[1], s[1], p[1], d[1])]

    def _pool_stride(self, x: Tensor, fh: int, fw: int) -> Tensor:
        if fh == 1 and fw == 1:
            return x
        return F.avg_pool2d(x, (fh, fw), (fh, fw), 0, True, True)

    def forward(self, x: OctaveInput) -> OctaveOutput:
        weights = self._path_tensors()
        if not torch.jit.is_scripting() and not self.training:
            weights = self._eval_tensors(x, weights)
        return self._forward(x, weights)

    def _path_tensors(self) -> List[Optional[Tensor]]:
        """The dense paths' tensors as ``_forward`` takes them: hh, lh, hl, ll, the fused [hl | ll]
        weight (None: concatenate on the fly), bias_h, bias_l."""
        return [self.weight_hh, self.weight_lh, self.weight_hl, self.weight_ll, None, self.bias_h, self.bias_l]

    @torch.jit.unused
    def _eval_tensors(self, x: OctaveInput, weights: List[Optional[Tensor]]) -> List[Optional[Tensor]]:
        """In inference, the concatenated [hl | ll] weight comes from a cache instead of a copy per call."""
        if not self._fuses_low or weights[2] is None or weights[3] is None:
            return weights
        inputs = [x] if isinstance(x, Tensor) else [x[0], x[1]]
        got = _eval_cache.cached(self, "fused-low", weights, inputs, lambda: fuse_low(weights))
        return weights if got is None else got

    def _forward(self, x: OctaveInput, weights: List[Optional[Tensor]]) -> OctaveOutput:
        xh, xl = self._split_input(x)
        if xh is not None:
            hw = self._out_hw(xh.shape[-2], xh.shape[-1])
        else:
            assert xl is not None
            hw = self._out_hw(xl.shape[-2] * self.octave, xl.shape[-1] * self.octave)
        pool = self.stride_mode == "pool" and self.stride != (1, 1)
        stride = (1, 1) if pool else self.stride
        if pool:
            # The paper's strided octave conv: average-pool by the stride, then stride-1 convs.
            if xh is not None:
                xh = self._pool_stride(xh, self.stride[0], self.stride[1])
            if xl is not None:
                xl_lh = self._pool_stride(xl, max(1, self.stride[0] // self.octave), max(1, self.stride[1] // self.octave))
                xl = self._pool_stride(xl, self.stride[0], self.stride[1])
            else:
                xl_lh = xl
        else:
            xl_lh = xl
        if self.depthwise:
            yh, yl = self._forward_depthwise(xh, xl, xl_lh, hw, stride, pool)
        elif (
            not torch.jit.is_scripting()
            and self._pointwise
            and stride == (1, 1)
            and not self.training
            and self._gemm_applies([xh, xl, xl_lh])
        ):
            yh, yl = self._forward_pointwise(xh, xl, xl_lh, hw, weights)
        else:
            yh, yl = self._forward_dense(xh, xl, xl_lh, hw, stride, weights)
        if yl is not None:
            eh, ew = low_size(hw[0], self.octave), low_size(hw[1], self.octave)
            if yl.shape[-2] != eh or yl.shape[-1] != ew:
                raise ValueError(
                    "OctConv2d: this conv maps the low branch to {}x{}, but the octave grid of its {}x{} output needs {}x{}; "
                    "use 'same' padding (padding = dilation * (kernel_size - 1) / 2) or alpha_out=0".format(
                        yl.shape[-2], yl.shape[-1], hw[0], hw[1], eh, ew
                    )
                )
        if yl is None:
            assert yh is not None
            return yh
        if yh is None:
            return yl
        return yh, yl

    def _forward_dense(
        self,
        xh: Optional[Tensor],
        xl: Optional[Tensor],
        xl_lh: Optional[Tensor],
        hw: List[int],
        stride: Tuple[int, int],
        weights: List[Optional[Tensor]],
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        g = self.groups
        yh: Optional[Tensor] = None
        yl: Optional[Tensor] = None
        w_hh, w_lh, w_hl, w_ll, w_low, b_h, b_l = weights[0], weights[1], weights[2], weights[3], weights[4], weights[5], weights[6]
        if w_hh is not None and xh is not None:
            yh = self._conv(xh, w_hh, b_h, stride, g)
        if w_lh is not None and xl_lh is not None:
            lh = self._conv(xl_lh, w_lh, b_h if yh is None else None, stride, g)
            yh = upsample_to(lh, hw) if yh is None else add_upsampled(yh, lh, self.octave)
        xhl: Optional[Tensor] = None
        if w_hl is not None and xh is not None:
            xhl = downsample(xh, self.octave)
        if w_hl is not None and w_ll is not None and xhl is not None and xl is not None and g == 1:
            # H->L and L->L share their output: one conv over the concatenated inputs.
            if w_low is None:
                w_low = torch.cat([w_hl, w_ll], 1)
            yl = self._conv(torch.cat([xhl, xl], 1), w_low, b_l, stride, 1)
        else:
            if w_ll is not None and xl is not None:
                yl = self._conv(xl, w_ll, b_l, stride, g)
            if w_hl is not None and xhl is not None:
                hl = self._conv(xhl, w_hl, b_l if yl is None else None, stride, g)
                yl = hl if yl is None else yl + hl
        return yh, yl

    @torch.jit.unused
    def _gemm_applies(self, xs: List[Optional[Tensor]]) -> bool:
        if torch.compiler.is_compiling():
            return False
        return all(t is None or (type(t) is Tensor and t.is_contiguous(memory_format=torch.channels_last)) for t in xs)

    @torch.jit.unused
    def _forward_pointwise(
        self, xh: Optional[Tensor], xl: Optional[Tensor], xl_lh: Optional[Tensor], hw: List[int], weights: List[Optional[Tensor]]
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """A 1x1 stride-1 octave conv on channels-last maps, in inference: each path is one matrix
        product over the pixels (a channels-last map is a pixels x channels matrix, no copy), and
        H->L accumulates into L->L in place, so the low output needs no concatenated input. At
        small batches this also skips the per-call set-up of a convolution kernel."""
        w_hh, w_lh, w_hl, w_ll, b_h, b_l = weights[0], weights[1], weights[2], weights[3], weights[5], weights[6]
        yh: Optional[Tensor] = None
        yl: Optional[Tensor] = None
        if w_hh is not None and xh is not None:
            yh = _matmul(xh, w_hh, b_h)
        if w_lh is not None and xl_lh is not None:
            lh = _matmul(xl_lh, w_lh, b_h if yh is None else None)
            yh = upsample_to(lh, hw) if yh is None else add_upsampled(yh, lh, self.octave)
        if w_ll is not None and xl is not None:
            yl = _matmul(xl, w_ll, b_l)
        if w_hl is not None and xh is not None:
            xhl = downsample(xh, self.octave)
            if yl is None:
                yl = _matmul(xhl, w_hl, b_l)
            else:
                _pixels(yl).addmm_(_pixels(xhl), w_hl.view(w_hl.shape[0], w_hl.shape[1]).t())
        return yh, yl

    def _forward_depthwise(
        self,
        xh: Optional[Tensor],
        xl: Optional[Tensor],
        xl_lh: Optional[Tensor],
        hw: List[int],
        stride: Tuple[int, int],
        pool: bool,
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        w_h, w_l = self.weight_h, self.weight_l
        yh: Optional[Tensor] = None
        low_all: Optional[Tensor] = None
        if w_h is not None and xh is not None:
            yh = self._conv(reorder(xh, self._hh_sel), w_h, self.bias_h, stride, w_h.shape[0])
        if w_l is not None:
            parts: List[Tensor] = []
            if xl is not None:
                parts.append(xl)
            if xh is not None and self._hl_sel.numel() > 0:
                parts.append(downsample(xh.index_select(1, self._hl_sel), self.octave))
            low_in = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            low_all = self._conv(low_in, w_l, self.bias_l, stride, w_l.shape[0])
        if self._same:
            return yh, low_all
        yl: Optional[Tensor] = None
        if low_all is not None:
            if self._lh_sel.numel() > 0:
                if pool and xl_lh is not None and w_l is not None:
                    # Strided pool mode: L->H channels are convolved on the low input pooled by
                    # stride / octave (the pooled high grid), as in the dense L->H path.
                    b_l = self.bias_l
                    lh = self._conv(
                        xl_lh.index_select(1, self._lh_sel), w_l.index_select(0, self._lh_sel),
                        None if b_l is None else b_l.index_select(0, self._lh_sel), stride, self._lh_sel.numel(),
                    )
                else:
                    lh = low_all.index_select(1, self._lh_sel)
                up = upsample_to(lh, hw)
                yh = up if yh is None else reorder(torch.cat([yh, up], 1), self._high_order)
            if len(self._ll_pos) > 0:
                yl = reorder(reorder(low_all, self._ll_sel), self._low_order)
        return yh, yl
