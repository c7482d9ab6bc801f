"""How an OctConv2d's parameters tile the weight of the plain conv it stands for.

Dense layers keep four path weights (``weight_hh``, ``weight_hl``, ``weight_lh``, ``weight_ll``)
that are the blocks of the dense weight cut by the input and output partitions (per group for a
grouped conv); depthwise layers keep one weight per resolution (``weight_h``, ``weight_l``).
Either way the parameters hold exactly the plain conv's numbers: ``from_conv`` slices,
``to_dense_weight`` reassembles.
"""

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ._resample import run_start, sort_order
from .partition import Partition


def _index(values: Sequence[int]) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long)


def _take(t: Tensor, dim: int, idx: Tensor) -> Tensor:
    """``t.index_select(dim, idx)``, as a view when ``idx`` is one run of consecutive channels (the
    default split, and every group of it): index_select copies, and on the large grouped convs
    of the zoo (RegNetY-128GF) the copies took 4.6 of the 12 s a conversion takes."""
    n = idx.numel()
    if n and int(idx[-1]) - int(idx[0]) == n - 1 and bool((idx.diff() == 1).all()):
        return t.narrow(dim, int(idx[0]), n)
    return t.index_select(dim, idx)


class PathWeights:
    """Mixin of OctConv2d: creating, initialising and converting the path parameters."""

    in_channels: int
    out_channels: int
    groups: int
    kernel_size: Tuple[int, ...]
    depthwise: bool
    has_bias: bool
    in_partition: Partition
    out_partition: Partition

    def _init_dense(self, bias: bool, factory: dict) -> None:
        g = self.groups
        k = self.kernel_size

        def weight(cout: int, cin: int) -> Optional[nn.Parameter]:
            if cout == 0 or cin == 0:
                return None
            return nn.Parameter(torch.empty(cout, cin // g, *k, **factory))

        self.weight_hh = weight(self.oh, self.ih)
        self.weight_hl = weight(self.ol, self.ih)
        self.weight_lh = weight(self.oh, self.il)
        self.weight_ll = weight(self.ol, self.il)
        self.bias_h = nn.Parameter(torch.empty(self.oh, **factory)) if bias and self.oh else None
        self.bias_l = nn.Parameter(torch.empty(self.ol, **factory)) if bias and self.ol else None
        # Placeholders so that TorchScript sees one attribute set whatever the kind.
        self.weight_h = self.weight_l = None
        self._same = False
        self._n_hl = 0
        self._lh_pos = []
        self._ll_pos = []
        for name in ("_hh_sel", "_hl_sel", "_lh_sel", "_lh_in_sel", "_ll_sel", "_high_order", "_low_order"):
            self.register_buffer(name, torch.empty(0, dtype=torch.long), persistent=False)
        self._hh_at = self._hl_at = self._lh_at = self._lh_in_at = self._ll_at = -1

    def _init_depthwise(self, bias: bool, factory: dict) -> None:
        # One depthwise conv per resolution; channels that change branch go through the
        # cheaper resolution (H->L: pool then conv; L->H: conv then upsample), as the paths do.
        pin, pout = self.in_partition, self.out_partition
        high_out, low_out = set(pout.high), set(pout.low)
        hh = [c for c in pin.high if c in high_out]
        hl = [c for c in pin.high if c in low_out]
        # Channels the low-resolution conv computes, in this order: the pooled high ones first, as
        # the usual partitions number them (high channels first), so that the outputs need no
        # permutation back to channel order.
        low_res = hl + list(pin.low)
        self._hh = hh
        self._low_res = low_res
        self._n_hl = len(hl)
        k = self.kernel_size
        self.weight_hh = self.weight_hl = self.weight_lh = self.weight_ll = None
        self.weight_h = nn.Parameter(torch.empty(len(hh), 1, *k, **factory)) if hh else None
        self.weight_l = nn.Parameter(torch.empty(len(low_res), 1, *k, **factory)) if low_res else None
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
        lh_in = [p - len(hl) for p in lh_pos]  # the same channels within the low input (L->H on the pooled grid)
        self.register_buffer("_lh_in_sel", _index(lh_in), persistent=False)
        # Where a selection is a run of consecutive channels (the usual case: partitions put the high
        # channels first), the forward narrows instead of gathering.
        self._hh_at = run_start([pos_h[c] for c in hh])
        self._hl_at = run_start([pos_h[c] for c in hl])
        self._lh_at = run_start(lh_pos)
        self._lh_in_at = run_start(lh_in)
        self._ll_at = run_start(ll_pos)
        self.register_buffer(
            "_ll_sel", torch.empty(0, dtype=torch.long) if ll_pos == list(range(len(low_res))) else _index(ll_pos), persistent=False
        )
        self.register_buffer("_high_order", sort_order(hh + [low_res[i] for i in lh_pos]), persistent=False)
        self.register_buffer("_low_order", sort_order([low_res[i] for i in ll_pos]), persistent=False)

    def reset_parameters(self) -> None:
        """Initialise as the equivalent nn.Conv2d would: uniform(+-1/sqrt(fan_in)) with the full conv's fan_in."""
        fan_in = (self.in_channels // self.groups) * math.prod(self.kernel_size)
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
                        p[dst] = _take(_take(weight, 0, rows), 1, cols)
        for b, idx in ((self.bias_h, pout.high), (self._low_bias(), pout.low)):
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


    def _path_weights(self) -> dict:
        """The four path weights by name ("hh", "hl", "lh", "ll"), cut back out of ``weight_low``
        on a layer whose low paths were fused."""
        out = {k: getattr(self, "weight_" + k) for k in ("hh", "hl", "lh", "ll")}
        fused = getattr(self, "weight_low", None)
        if fused is not None:
            out["hl"], out["ll"] = fused[:, : self.ih], fused[:, self.ih :]
        merged = getattr(self, "weight_lowres", None)  # [[0, lh], [hl, ll]] (merge_lh)
        if merged is not None:
            out["lh"], out["hl"], out["ll"] = merged[: self.oh, self.ih :], merged[self.oh :, : self.ih], merged[self.oh :, self.ih :]
        return out

    def _low_bias(self) -> Optional[Tensor]:
        """The low output's bias, also where the merged low conv holds it (after zeros for L->H)."""
        merged = getattr(self, "bias_lowres", None)
        return merged[self.oh :] if merged is not None else self.bias_l

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
        paths = self._path_weights()
        for out_name, out_idx in (("h", pout.high), ("l", pout.low)):
            for in_name, in_idx in (("h", pin.high), ("l", pin.low)):
                p = paths[in_name + out_name]
                if p is not None:
                    for rows, src, cols in self._blocks(out_idx, in_idx):
                        block = weight[rows]
                        block[:, cols] = p[src]
                        weight[rows] = block
        for b, idx in ((self.bias_h, pout.high), (self._low_bias(), pout.low)):
            if b is not None and bias is not None:
                bias[list(idx)] = b
        return weight, bias

