"""The inference forms of an octave conv, which ``octify.freeze`` picks: each computes the same function.

1x1 layers as matrix products (``use_matmul``), every conv on oneDNN (``use_onednn``), the
[hl | ll] weight stored once (``fuse_low_weights``), and L->H computed by the low output's conv
(``merge_lh``).
"""

import torch
from torch import nn

from ._octconv_kernels import fuse_low, like_format

__all__ = ["InferenceForms"]


class InferenceForms:
    """Mixin of the octave convs: the switches between their kernels and the fused low weight."""

    def use_matmul(self, enabled: bool = True) -> "InferenceForms":
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

    def use_onednn(self, enabled: bool = True) -> "InferenceForms":
        """Run every conv of this layer with oneDNN's kernel on CPU float32 / bfloat16 inputs,
        whatever its size (see ``octify.nn.onednn``: ``octify.freeze(conv3d="onednn")`` turns it on
        for 3-D layers). The same function; the layer then runs in eager mode and TorchScript only."""
        self._onednn = bool(enabled)
        return self

    @torch.no_grad()
    def fuse_low_weights(self) -> "InferenceForms":
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

    @torch.no_grad()
    def merge_lh(self) -> "InferenceForms":
        """Compute L->H with H->L and L->L in one conv over the low-resolution inputs [pooled high |
        low]: its weight (``weight_lowres``) is [[0, lh], [hl, ll]], zeros where the pooled high
        input would feed L->H, and its output [L->H | low output] (bias ``bias_lowres``: zeros,
        then ``bias_l``). The layer then runs two convs instead of three, for the multiply-adds
        of a zero block as large as H->L (at alpha 0.5 the layer does 14% more): it pays where
        each conv call has a large fixed cost, as int8 convs have at batch 1. ``weight_lh``,
        ``weight_hl``, ``weight_ll``, ``weight_low`` and ``bias_l`` become None (the state dict
        changes accordingly); a no-op on layers that cannot (:attr:`can_merge_lh`)."""
        if not self.can_merge_lh:
            return self
        w = fuse_low(self.path_tensors())
        w_lh, w_low, b_l = w[1], w[4], w[6]
        assert w_lh is not None and w_low is not None and self.weight_hh is not None  # can_merge_lh
        zeros = w_lh.new_zeros((w_lh.shape[0], self.weight_hh.shape[1]) + tuple(w_lh.shape[2:]))
        merged = like_format(torch.cat([torch.cat([zeros, w_lh], 1), w_low], 0), w_lh)
        self.weight_lowres = nn.Parameter(merged, requires_grad=bool(w_lh.requires_grad))
        if b_l is not None:
            self.bias_lowres = nn.Parameter(torch.cat([b_l.new_zeros(w_lh.shape[0]), b_l]), requires_grad=bool(b_l.requires_grad))
        self.weight_lh = self.weight_hl = self.weight_ll = self.weight_low = self.bias_l = None
        return self

    @property
    def can_merge_lh(self) -> bool:
        """Whether :meth:`merge_lh` applies: a dense ungrouped layer with all four paths, its
        stride in the convs (``stride_mode="pool"`` pools L->H's input differently), run as convs
        (not :attr:`runs_as_matmul`) and not merged yet."""
        return (
            not self.depthwise and self.groups == 1 and not self._pool and not self._matmul and self.weight_lowres is None
            and self.weight_hh is not None and self.weight_lh is not None
            and (self.weight_low is not None or (self.weight_hl is not None and self.weight_ll is not None))
        )

    @property
    def merges_lh(self) -> bool:
        """Whether this layer computes L->H in its low output's conv (:meth:`merge_lh`)."""
        return self.weight_lowres is not None

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
