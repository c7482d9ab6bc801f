"""Stage 3b, assign (with calibration data only): which output channels of each conv go low.

Any partition is valid (weights follow it), so the channels that lose least when taken one
octave down can be the low ones. Channels that meet in a sum (a residual stream, a gated branch)
must share one partition, or a realign would move channels between branches at every sum: the
convs feeding the same channel layout are tied into one group, which gets one assignment from
their scores together. A group the assignment cannot serve keeps the default split, with the
reason recorded.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Set, Tuple

import torch
import torch.fx as fx
from torch import nn

from ..nn._common import is_depthwise
from ..nn.partition import low_channels
from .ops import (
    ARITHMETIC, CHANNEL_PRESERVING_MODULES, ELEMENTWISE_FUNCTIONS, ELEMENTWISE_METHODS, LOCAL_POOL_MODULES, is_conv,
    mixes_channels,
)
from .plan import ConvPlan

__all__ = ["layout_groups", "assign_low_channels"]


def _channels(node: fx.Node) -> Optional[int]:
    val = node.meta.get("val")
    return int(val.shape[1]) if isinstance(val, torch.Tensor) and val.dim() == 4 else None


def _keeps_layout(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """Ops whose output channel k is made from input channel k alone (or from channel k of each operand)."""
    if node.op == "call_module":
        return isinstance(modules.get(node.target), CHANNEL_PRESERVING_MODULES + LOCAL_POOL_MODULES)
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS or node.target in ARITHMETIC
    return node.op == "call_method" and (node.target in ELEMENTWISE_METHODS or node.target in ARITHMETIC)


def layout_groups(gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> Tuple[List[List[fx.Node]], Set[fx.Node]]:
    """The conv nodes grouped by the channel layout their outputs share, and the convs whose
    group must keep the default split.

    Convs whose outputs are summed or multiplied (through ops that keep each channel in place)
    are in one group; a depthwise conv carries its input's layout on. A concatenation or a
    channel slice makes a layout of its own out of its inputs' (partitions compose); where such a
    value meets another in a sum or product, a measured choice on either side would make the two
    partitions differ (a realign the default split does not need), so every group behind both
    operands is pinned to the default."""
    parent: Dict[fx.Node, fx.Node] = {}

    def find(n: fx.Node) -> fx.Node:
        while parent[n] is not n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    layout: Dict[fx.Node, Optional[fx.Node]] = {}
    behind: Dict[fx.Node, Set[fx.Node]] = {}  # the groups a value's channel layout is made of
    pinned: Set[fx.Node] = set()
    convs: List[fx.Node] = []
    for node in gm.graph.nodes:
        c = _channels(node)
        if is_conv(node, modules):
            convs.append(node)
            src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
            carried = layout.get(src) if src is not None and is_depthwise(modules[node.target]) else None
            parent[node] = node if carried is None else find(carried)
            layout[node] = find(node)
            behind[node] = {node}
            continue
        inputs = node.all_input_nodes
        behind[node] = set() if mixes_channels(node, modules) else {r for a in inputs for r in behind.get(a, ())}
        if c is None or not _keeps_layout(node, modules):
            layout[node] = None
            continue
        operands = [a for a in inputs if _channels(a) == c]
        roots = {find(r) for a in operands if (r := layout.get(a)) is not None}
        if len(operands) > 1 and any(layout.get(a) is None and behind.get(a) for a in operands):
            pinned.update(behind[node])  # a composed layout meets another: keep them all default
        if not roots:
            layout[node] = None
            continue
        first, *rest = roots
        for r in rest:
            parent[r] = first
        layout[node] = first
    groups: Dict[fx.Node, List[fx.Node]] = {}
    for n in convs:
        groups.setdefault(find(n), []).append(n)
    pinned_roots = {find(n) for n in pinned if n in parent}
    return list(groups.values()), {n for n in convs if find(n) in pinned_roots}


def assign_low_channels(
    gm: fx.GraphModule, plans: Mapping[fx.Node, ConvPlan], scores: Mapping[str, torch.Tensor]
) -> Dict[str, str]:
    """Set ``plan.low`` on the convs of every layout group that can take a measured assignment:
    the ``floor(alpha * C)`` channels with the lowest mean score over the group's convs. Returns
    ``{conv name: why it keeps the default split}`` for the convs that do."""
    modules = dict(gm.named_modules())
    calls: Dict[str, int] = {}
    for node in plans:
        calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    kept: Dict[str, str] = {}
    groups, pinned = layout_groups(gm, modules)
    for group in groups:
        octave = [n for n in group if n in plans and plans[n].alpha_out > 0.0 and not plans[n].keep_plain]
        setters = [n for n in octave if not is_depthwise(modules[n.target])]
        if not setters:
            continue
        why = None
        # Depthwise convs count too: one fed a plain tensor sets its output split from the plan
        # like any conv (one fed a pair passes the pair's split on).
        sizes = {(_channels(n), low_channels(_channels(n) or 0, plans[n].alpha_out)) for n in octave}
        if any(modules[n.target].groups > 1 or plans[n].split_groups > 1 for n in setters):
            why = "a grouped conv (or one feeding a grouped consumer) keeps its per-group split"
        elif any(plans[n].cuts for n in setters):
            why = "its output is sliced into channel ranges, each split on its own"
        elif len(sizes) > 1:
            why = "the convs of its channel layout have different alphas or widths"
        elif any(calls[str(n.target)] > 1 for n in setters):
            why = "a conv module called more than once"
        elif any(n in pinned for n in group):
            why = "its channels meet a concatenation or a channel slice in a sum or product (partitions must match there)"
        measured = [scores[str(n.target)] for n in octave if str(n.target) in scores]
        if why is None and not measured:
            why = "no calibration measurement reached it"
        if why is not None:
            kept.update({str(n.target): why for n in setters})
            continue
        (channels, n_low), = sizes
        measured = [s for s in measured if s.numel() == channels]
        if not measured:
            kept.update({str(n.target): "no calibration measurement reached it" for n in setters})
            continue
        score = torch.stack(measured).mean(0)
        low = tuple(sorted(torch.argsort(score, stable=True)[:n_low].tolist()))
        for n in octave:
            plans[n].low = low
    return kept
