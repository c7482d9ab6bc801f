"""OctConv2d: octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049).

The layer is three concerns in three files: this one builds it, checks its input and picks a
kernel; ``_octconv_weights`` holds how its parameters tile the plain conv's weight;
``_octconv_kernels`` the computations. All three are written over the number of spatial axes:
``OctConvNd`` is the layer, ``OctConv2d`` its 2-D form (``octconv_nd`` holds the 1-D and 3-D ones).
"""

from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _ntuple

from ..utils.choices import STRIDE_MODES
from ..utils.validate import check_choice, check_int, check_octave
from ._common import conv_out, depthwise_shape, low_size, resolve_padding
from ._octconv_forms import InferenceForms
from ._octconv_kernels import Kernels, fuse_low
from ._octconv_weights import PathWeights
from ._resample import check_low, fx_tracing, low_shape
from .partition import AlphaLike, Partition, parse_alpha

__all__ = ["OctConvNd", "OctConv2d", "OctaveInput", "OctaveOutput", "fuse_low"]

OctaveInput = Union[Tensor, Tuple[Tensor, Tensor]]
OctaveOutput = Union[Tensor, Tuple[Tensor, Tensor]]
_IntOr2 = Union[int, Tuple[int, int]]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class OctConvNd(PathWeights, Kernels, InferenceForms, nn.Module):
    """The octave convolution over 1, 2 or 3 spatial axes (use :class:`OctConv2d`, ``OctConv1d``,
    ``OctConv3d``). A subclass names its dimension in ``_ND``, ``_NAME``, ``_CONV`` (the torch.nn
    conv it stands for) and ``_LAYOUT``; ``_axes`` is how many trailing axes the octave resamples."""

    _ND = 1
    _NAME = "OctConvNd"
    _CONV: type = nn.Conv1d
    _LAYOUT = "N, C, L"
    # Class-level annotations: TorchScript needs the element type of lists that may be empty.
    _ll_pos: List[int]
    _lh_pos: List[int]
    _pad4: List[int]
    _stride_l: List[int]
    _conv_stride: List[int]
    _lh_pool: List[int]
    _zeros: List[int]
    _geom: List[List[int]]
    __jit_unused_properties__ = ["fuses_low", "pointwise", "runs_as_matmul"]

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
        self._build(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device, dtype,
            alpha, octave, stride_mode, in_partition, out_partition,
        )
        self.reset_parameters()

    def _build(
        self, in_channels: int, out_channels: int, kernel_size: _IntOr2, stride: _IntOr2, padding: Union[_IntOr2, str],
        dilation: _IntOr2, groups: int, bias: bool, padding_mode: str, device: Optional[torch.device],
        dtype: Optional[torch.dtype], alpha: AlphaLike, octave: int, stride_mode: str,
        in_partition: Optional[Partition], out_partition: Optional[Partition], axes: int = -1,
    ) -> None:
        """Everything ``__init__`` does but the random initialisation (``from_conv`` copies weights instead)."""
        who = self._NAME
        check_int(in_channels, f"{who}: in_channels", 0)
        check_int(out_channels, f"{who}: out_channels", 0)
        check_int(groups, f"{who}: groups", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{who}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        check_octave(octave, f"{who}: octave")
        check_choice(stride_mode, f"{who}: stride_mode", STRIDE_MODES)
        check_choice(padding_mode, f"{who}: padding_mode", PADDING_MODES)
        alpha_in, alpha_out = parse_alpha(alpha)
        self.in_channels = in_channels
        self.out_channels = out_channels
        # The octave acts on the last ``axes`` spatial axes: L of a 1-D map, H and W otherwise.
        axes = axes if axes > 0 else min(self._ND, 2)
        self._nd = self._ND
        self._axes = axes
        self.kernel_size: Tuple[int, ...] = self._spatial(kernel_size, "kernel_size")
        self.stride: Tuple[int, ...] = self._spatial(stride, "stride")
        if stride_mode == "pool" and any(s != 1 and s % octave for s in self.stride[self._ND - axes:]):
            # The L->H path pools the low input by stride / octave onto the pooled high grid.
            raise ValueError(
                f"{who}: stride_mode='pool' needs each stride to be 1 or a multiple of octave ({octave}), "
                f"found stride={self.stride}; use stride_mode='conv'"
            )
        self.dilation: Tuple[int, ...] = self._spatial(dilation, "dilation")
        self.padding: Tuple[int, ...] = (
            self._spatial(padding, "padding", 0) if not isinstance(padding, str)
            else resolve_padding(padding, self.kernel_size, self.dilation, self.stride, who)
        )
        self.groups = groups
        self.padding_mode = padding_mode
        self.octave = octave
        self.stride_mode = stride_mode
        self.depthwise = depthwise_shape(in_channels, out_channels, groups)

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
                        f"{who}: a grouped conv (groups={groups}) needs the same number of low channels in "
                        f"every group of its {what}, found low channels {part.low}"
                    )
        self.alpha_in = self.in_partition.alpha
        self.alpha_out = self.out_partition.alpha
        self.ih, self.il = len(self.in_partition.high), len(self.in_partition.low)
        self.oh, self.ol = len(self.out_partition.high), len(self.out_partition.low)

        factory = {"device": device, "dtype": dtype}
        if self.depthwise:
            self._init_depthwise(bias, factory)
        else:
            self._init_dense(bias, factory)
        self.has_bias = bias
        # 1x1 dense 2-D convs that are stride-1 once pooled can run as matrix products (use_matmul).
        self._pointwise = (
            self._ND == 2 and not self.depthwise and groups == 1 and self.kernel_size == (1, 1)
            and (self.stride == (1, 1) or stride_mode == "pool") and self.padding == (0, 0) and self.dilation == (1, 1)
        )
        self._matmul = False
        self._onednn = False
        # Other dense ungrouped convs run H->L and L->L as one conv over the concatenated inputs;
        # ``octify.freeze`` stores their [hl | ll] weight once (``weight_low``).
        self._fuses_low = not self.depthwise and groups == 1 and not self._pointwise
        self.register_parameter("weight_low", None)
        # ``octify.freeze(merge_lh=True)`` computes L->H in that conv too (``merge_lh``).
        self.register_parameter("weight_lowres", None)
        self.register_parameter("bias_lowres", None)
        self._derive()

    def _spatial(self, value: Any, what: str, minimum: int = 1) -> Tuple[int, ...]:
        """``value`` (an int or one per spatial axis) as a tuple of ``_ND`` ints of at least ``minimum``
        (a float dilation, say braincreators' positional ``alpha``, is refused here, not at run time)."""
        if isinstance(value, (tuple, list)) and len(value) != self._ND:
            raise ValueError(f"{self._NAME}: {what} must be an int or {self._ND} ints, found {tuple(value)!r}")
        values = tuple(_ntuple(self._ND)(value))
        for v in values:
            check_int(v, f"{self._NAME}: {what}", minimum)
        return values

    def _derive(self) -> None:
        """The geometry as the forward reads it (lists: TorchScript indexes no tuple by a variable)."""
        nd = len(self.kernel_size)
        self._nd = nd
        self._name = type(self)._NAME
        self._layout = type(self)._LAYOUT
        # Reversed, doubled padding for F.pad when padding_mode is not zeros (as nn.Conv2d does).
        self._pad4 = [p for i in reversed(range(nd)) for p in (self.padding[i], self.padding[i])]
        self._zeros = [0] * nd
        self._stride_l = list(self.stride)
        self._pool = self.stride_mode == "pool" and any(s != 1 for s in self.stride)
        self._conv_stride = [1] * nd if self._pool else list(self.stride)
        self._unit_stride = all(s == 1 for s in self._conv_stride)
        first = nd - self._axes
        self._lh_pool = [max(1, s // self.octave) if i >= first else s for i, s in enumerate(self.stride)]
        self._geom = [list(self.kernel_size), list(self.stride), list(self.padding), list(self.dilation)]

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_geom" not in self.__dict__:  # saved before the layer was written over its dimension
            self.__dict__.setdefault("_axes", 2)
            self._derive()
        # Layers saved by octify 0.1.0 predate the inference forms.
        self._parameters.setdefault("weight_low", None)
        self._parameters.setdefault("weight_lowres", None)
        self._parameters.setdefault("bias_lowres", None)
        self.__dict__.setdefault("_matmul", False)
        self.__dict__.setdefault("_onednn", False)
        if "_n_hl" not in self.__dict__:
            self._n_hl = len(getattr(self, "_low_res", [])) - self.il if self.depthwise else 0
            self._lh_pos = list(getattr(self, "_lh_pos", []))
        if "_hh_at" not in self.__dict__:  # saved before channel runs were narrowed
            if self.depthwise:
                # Its low conv's channels were then ordered low input first, pooled high ones
                # after: rebuild the layer in today's order from the weights it tiles.
                trainable = {n: p.requires_grad for n, p in self._parameters.items() if p is not None}
                weight, bias = self.to_dense_weight()
                self._init_depthwise(bias is not None, {"dtype": weight.dtype, "device": weight.device})
                self._load_from_dense(weight, bias)
                for n, p in self._parameters.items():
                    if p is not None:
                        p.requires_grad_(trainable.get(n, True))
            else:
                self._hh_at = self._hl_at = self._lh_at = self._lh_in_at = self._ll_at = -1
                self.register_buffer("_lh_in_sel", torch.empty(0, dtype=torch.long), persistent=False)

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
        return cls._from_conv(conv, alpha, octave, stride_mode, in_partition, out_partition, -1)

    @classmethod
    def _from_conv(
        cls, conv: nn.Module, alpha: AlphaLike, octave: int, stride_mode: str, in_partition: Optional[Partition],
        out_partition: Optional[Partition], axes: int,
    ) -> "OctConvNd":
        if not isinstance(conv, cls._CONV):
            raise TypeError(f"{cls._NAME}.from_conv expects an nn.{cls._CONV.__name__}, found {type(conv).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._build(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
            conv.bias is not None, conv.padding_mode, conv.weight.device, conv.weight.dtype,
            alpha, octave, stride_mode, in_partition, out_partition, axes,
        )
        layer._load_from_dense(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
        layer.train(conv.training)
        return layer

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"alpha=({self.alpha_in:g}, {self.alpha_out:g}), octave={self.octave}"
        )
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
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
    def _split_input(self, x: OctaveInput) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        # Pairs are told apart from tensors by ``isinstance(x, tuple)``: TorchScript refines the
        # Union on it, and a torch.fx Proxy (a single tensor while re-tracing) is not a tuple.
        if isinstance(x, tuple):
            if self.il == 0:
                raise ValueError("{}: alpha_in=0, so the input must be a plain Tensor of {} channels, found a pair".format(self._name, self.ih))
            if self.ih == 0:
                raise ValueError("{}: alpha_in=1, so the input must be the low Tensor alone ({} channels), found a pair".format(self._name, self.il))
            xh: Optional[Tensor] = x[0]
            xl: Optional[Tensor] = x[1]
        elif self.il == 0:
            xh = x
            xl = None
        elif self.ih == 0:
            xh = None
            xl = x
        else:
            raise ValueError(
                "{}: expected a (high, low) pair since alpha_in={} ({} high + {} low channels), found a single Tensor".format(
                    self._name, self.alpha_in, self.ih, self.il
                )
            )
        if not fx_tracing():
            self._check_input(xh, xl)
        return xh, xl

    def _check_input(self, xh: Optional[Tensor], xl: Optional[Tensor]) -> None:
        name, dims = self._name, self._nd + 2
        if xh is not None:
            if xh.dim() != dims:
                raise ValueError("{}: expected {}-D ({}) input, found {} dims".format(name, dims, self._layout, xh.dim()))
            if xh.shape[1] != self.ih:
                raise ValueError("{}: expected a high input with {} channels, found {}".format(name, self.ih, xh.shape[1]))
        if xl is not None:
            if xl.dim() != dims:
                raise ValueError("{}: expected a {}-D ({}) low input, found {} dims".format(name, dims, self._layout, xl.dim()))
            if xl.shape[1] != self.il:
                raise ValueError("{}: expected a low input with {} channels, found {}".format(name, self.il, xl.shape[1]))
            if xh is not None:
                check_low(xh, xl, self.octave, name + " input", self._axes)

    def _out_size(self, sizes: List[int]) -> List[int]:
        """Spatial sizes of the high output for a high input of spatial sizes ``sizes``."""
        k, s, p, d = self._geom[0], self._geom[1], self._geom[2], self._geom[3]
        out: List[int] = []
        for i in range(self._nd):
            if self.stride_mode == "pool":
                out.append(conv_out(low_size(sizes[i], s[i]), k[i], 1, p[i], d[i]))
            else:
                out.append(conv_out(sizes[i], k[i], s[i], p[i], d[i]))
        return out

    def _out_hw(self, h: int, w: int) -> List[int]:
        """Spatial size of the high output of a 2-D layer for a high input of ``h`` x ``w``."""
        return self._out_size([h, w])

    def forward(self, x: OctaveInput) -> OctaveOutput:
        return self.forward_with(x, self.path_tensors())

    # -- the inference interface (freezing runs the layer on weights with a batch norm folded in) --
    def path_tensors(self) -> List[Optional[Tensor]]:
        """The dense paths' tensors as :meth:`forward_with` takes them: hh, lh, hl, ll, the fused
        [hl | ll] weight (``weight_low``, set by ``octify.freeze``; hl and ll are then None),
        bias_h, bias_l, and the merged low-resolution conv's weight and bias (``weight_lowres``,
        ``bias_lowres``: :meth:`merge_lh`; lh, hl, ll, the fused weight and bias_l are then None)."""
        return [self.weight_hh, self.weight_lh, self.weight_hl, self.weight_ll, self.weight_low, self.bias_h, self.bias_l,
                self.weight_lowres, self.bias_lowres]

    def forward_with(self, x: OctaveInput, weights: List[Optional[Tensor]]) -> OctaveOutput:
        """The layer's output computed with ``weights`` (laid out as :meth:`path_tensors`) instead of its own."""
        xh, xl = self._split_input(x)
        if xh is not None:
            high: List[int] = []
            for i in range(self._nd):  # indexed, not list(xh.shape[2:]): torch.fx cannot iterate a traced shape
                high.append(xh.shape[2 + i])
            hw = self._out_size(high)
        else:
            assert xl is not None
            sizes: List[int] = []
            for i in range(self._nd):
                sizes.append(xl.shape[2 + i] * self.octave if i >= self._nd - self._axes else xl.shape[2 + i])
            hw = self._out_size(sizes)
        pool = self._pool
        stride = self._conv_stride
        if pool:
            # The paper's strided octave conv: average-pool by the stride, then stride-1 convs.
            if xh is not None:
                xh = self._pool_stride(xh, self._stride_l)
            if xl is not None:
                xl_lh = self._pool_stride(xl, self._lh_pool)
                xl = self._pool_stride(xl, self._stride_l)
            else:
                xl_lh = xl
        else:
            xl_lh = xl
        if self.depthwise:
            yh, yl = self._forward_depthwise(xh, xl, xl_lh, hw, stride, pool)
        elif self._matmul and self._unit_stride:
            yh, yl = self._forward_pointwise(xh, xl, xl_lh, hw, weights)
        else:
            yh, yl = self._forward_dense(xh, xl, xl_lh, hw, stride, weights)
        if yl is not None and not fx_tracing():
            want = low_shape(hw, self.octave, self._axes)
            if list(yl.shape[2:]) != want:
                raise ValueError(
                    "{}: this conv maps the low branch to {}, but the octave grid of its {} output needs {}; "
                    "use 'same' padding (padding = dilation * (kernel_size - 1) / 2) or alpha_out=0".format(
                        self._name, "x".join([str(v) for v in yl.shape[2:]]), "x".join([str(v) for v in hw]),
                        "x".join([str(v) for v in want]),
                    )
                )
        if yl is None:
            assert yh is not None
            return yh
        if yh is None:
            return yl
        return yh, yl



class OctConv2d(OctConvNd):
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

    _ND = 2
    _NAME = "OctConv2d"
    _CONV = nn.Conv2d
    _LAYOUT = "N, C, H, W"
