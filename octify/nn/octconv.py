"""OctConv2d: octave convolution (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049).

The layer is three concerns in three files: this one builds it, checks its input and picks a
kernel; ``_octconv_weights`` holds how its parameters tile the plain conv's weight;
``_octconv_kernels`` the computations.
"""

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..utils.validate import check_choice, check_int, check_octave
from ._common import conv_out, depthwise_shape, low_size, resolve_padding
from ._octconv_kernels import Kernels, fuse_low
from ._octconv_weights import PathWeights
from ._resample import check_low, fx_tracing
from .partition import AlphaLike, Partition, parse_alpha

__all__ = ["OctConv2d", "OctaveInput", "OctaveOutput", "fuse_low"]

OctaveInput = Union[Tensor, Tuple[Tensor, Tensor]]
OctaveOutput = Union[Tensor, Tuple[Tensor, Tensor]]
_IntOr2 = Union[int, Tuple[int, int]]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class OctConv2d(PathWeights, Kernels, nn.Module):
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
    _lh_pos: List[int]
    _pad4: List[int]
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
        in_partition: Optional[Partition], out_partition: Optional[Partition],
    ) -> None:
        """Everything ``__init__`` does but the random initialisation (``from_conv`` copies weights instead)."""
        check_int(in_channels, "OctConv2d: in_channels", 0)
        check_int(out_channels, "OctConv2d: out_channels", 0)
        check_int(groups, "OctConv2d: groups", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"OctConv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        check_octave(octave, "OctConv2d: octave")
        check_choice(stride_mode, "OctConv2d: stride_mode", ("conv", "pool"))
        check_choice(padding_mode, "OctConv2d: padding_mode", PADDING_MODES)
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
        self.padding: Tuple[int, int] = resolve_padding(padding, self.kernel_size, self.dilation, self.stride, "OctConv2d")
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
        if self.depthwise:
            self._init_depthwise(bias, factory)
        else:
            self._init_dense(bias, factory)
        self.has_bias = bias
        # 1x1 dense convs that are stride-1 once pooled can run as matrix products (use_matmul).
        self._pointwise = (
            not self.depthwise and groups == 1 and self.kernel_size == (1, 1)
            and (self.stride == (1, 1) or stride_mode == "pool") and self.padding == (0, 0) and self.dilation == (1, 1)
        )
        self._matmul = False
        # Other dense ungrouped convs run H->L and L->L as one conv over the concatenated inputs;
        # ``octify.freeze`` stores their [hl | ll] weight once (``weight_low``).
        self._fuses_low = not self.depthwise and groups == 1 and not self._pointwise
        self.register_parameter("weight_low", None)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # Layers saved by octify 0.1.0 predate the inference forms.
        self._parameters.setdefault("weight_low", None)
        self.__dict__.setdefault("_matmul", False)
        if "_n_hl" not in self.__dict__:
            self._n_hl = len(getattr(self, "_low_res", [])) - self.il if self.depthwise else 0
            self._lh_pos = list(getattr(self, "_lh_pos", []))

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
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer._build(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
            conv.bias is not None, conv.padding_mode, conv.weight.device, conv.weight.dtype,
            alpha, octave, stride_mode, in_partition, out_partition,
        )
        layer._load_from_dense(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())
        layer.train(conv.training)
        return layer

    # -- inference forms (``octify.freeze`` picks them; each is the same function) --------------
    def use_matmul(self, enabled: bool = True) -> "OctConv2d":
        """Run each path of this 1x1 layer as one matrix product over the pixels of a
        channels-last map (no convolution set-up per call, H->L accumulated onto L->L without a
        concatenated input); ValueError for a layer that is not 1x1, stride-1 once pooled, dense
        and ungrouped. Inputs in any layout give the same numbers (others are copied first)."""
        if enabled and not self._pointwise:
            raise ValueError(
                "OctConv2d.use_matmul: only dense, ungrouped 1x1 convs without padding or dilation, stride 1 once pooled, "
                f"run as matrix products; this layer is {self.extra_repr()}"
            )
        self._matmul = bool(enabled)
        return self

    @torch.no_grad()
    def fuse_low_weights(self) -> "OctConv2d":
        """Store H->L and L->L as one ``weight_low`` parameter, the [hl | ll] concatenation that the
        low output's single conv uses, instead of concatenating it on every call. ``weight_hl``
        and ``weight_ll`` become None (the state dict changes accordingly); a no-op on layers
        that do not run the two paths as one conv (:attr:`fuses_low`)."""
        if not self.fuses_low:
            return self
        weights = fuse_low(self.path_tensors())
        fused = weights[4]
        assert fused is not None  # fuses_low: both paths are present
        self.weight_low = nn.Parameter(fused, requires_grad=bool(self.weight_hl.requires_grad))
        self.weight_hl = None
        self.weight_ll = None
        return self

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
    def _split_input(self, x: OctaveInput) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        # Pairs are told apart from tensors by ``isinstance(x, tuple)``: TorchScript refines the
        # Union on it, and a torch.fx Proxy (a single tensor while re-tracing) is not a tuple.
        if isinstance(x, tuple):
            if self.il == 0:
                raise ValueError("OctConv2d: alpha_in=0, so the input must be a plain Tensor of {} channels, found a pair".format(self.ih))
            if self.ih == 0:
                raise ValueError("OctConv2d: alpha_in=1, so the input must be the low Tensor alone ({} channels), found a pair".format(self.il))
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
                "OctConv2d: expected a (high, low) pair since alpha_in={} ({} high + {} low channels), found a single Tensor".format(
                    self.alpha_in, self.ih, self.il
                )
            )
        if not fx_tracing():
            self._check_input(xh, xl)
        return xh, xl

    def _check_input(self, xh: Optional[Tensor], xl: Optional[Tensor]) -> None:
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

    def _out_hw(self, h: int, w: int) -> List[int]:
        """Spatial size of the high output for a high input of ``h`` x ``w``."""
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        if self.stride_mode == "pool":
            h, w = low_size(h, s[0]), low_size(w, s[1])
            return [conv_out(h, k[0], 1, p[0], d[0]), conv_out(w, k[1], 1, p[1], d[1])]
        return [conv_out(h, k[0], s[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], d[1])]

    def forward(self, x: OctaveInput) -> OctaveOutput:
        return self.forward_with(x, self.path_tensors())

    # -- the inference interface (freezing runs the layer on weights with a batch norm folded in) --
    def path_tensors(self) -> List[Optional[Tensor]]:
        """The dense paths' tensors as :meth:`forward_with` takes them: hh, lh, hl, ll, the fused
        [hl | ll] weight (``weight_low``, set by ``octify.freeze``; hl and ll are then None),
        bias_h, bias_l."""
        return [self.weight_hh, self.weight_lh, self.weight_hl, self.weight_ll, self.weight_low, self.bias_h, self.bias_l]

    @property
    def fuses_low(self) -> bool:
        """Whether H->L and L->L can run as one conv over a [hl | ll] weight (ungrouped, not 1x1,
        both paths present)."""
        return self._fuses_low and self.weight_hl is not None and self.weight_ll is not None

    @property
    def pointwise(self) -> bool:
        """Whether this layer is a dense, ungrouped 1x1 conv, stride 1 once pooled (it can :meth:`use_matmul`)."""
        return self._pointwise

    @property
    def runs_as_matmul(self) -> bool:
        """Whether this 1x1 layer runs each path as one matrix product over the pixels
        (``octify.freeze`` turns it on for channels-last models)."""
        return self._matmul

    def forward_with(self, x: OctaveInput, weights: List[Optional[Tensor]]) -> OctaveOutput:
        """The layer's output computed with ``weights`` (laid out as :meth:`path_tensors`) instead of its own."""
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
        elif self._matmul and stride == (1, 1):
            yh, yl = self._forward_pointwise(xh, xl, xl_lh, hw, weights)
        else:
            yh, yl = self._forward_dense(xh, xl, xl_lh, hw, stride, weights)
        if yl is not None and not fx_tracing():
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

