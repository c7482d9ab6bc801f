"""The latency policy: where octave layers cannot pay for themselves on a CPU, keep them plain.

Measured with benchmarks/latency.py: an octave conv's extra paths and resampling cost kernel
launches and passes over memory that only big enough convs amortise. Depthwise and thin-group
convs are memory-bound, so a block holding one is kept plain whole: an octave 1x1 conv around a
plain depthwise conv would only add splits and merges. ``plan`` applies these rules when
``policy="latency-rules"``, and ``policy="latency"`` where it cannot time (``measured.py``).
"""

from __future__ import annotations

import math

from typing import Mapping, Optional

import torch
import torch.fx as fx
from torch import nn

from ..nn._common import is_depthwise
from ..nn.cost import octave_macs_ratio
from .ops import CONCAT, is_conv

__all__ = ["UNIT", "block_of", "unit_of", "latency_blocks", "estimated_saving"]

UNIT = "octify_unit"  # node.meta key: the unit (fx.latency.unit_of) a converted graph's node was emitted for
LATENCY_MIN_SIZE = 14  # a 7x7 map's 4x4 low branch is too small for efficient kernels
LATENCY_MIN_GROUP_WIDTH = 16
LATENCY_MIN_LOW = 16  # low-branch channels below which the extra paths cost more than they save
LATENCY_MIN_LOW_PER_GROUP = 8
LATENCY_MIN_SAVING = 0.10  # below this share of the conv MACs saved, the whole model stays plain


def estimated_saving(
    gm: fx.GraphModule, modules: Mapping[str, nn.Module], alpha_out: Mapping[fx.Node, float], octave: int
) -> float:
    """The share of the convs' multiply-adds the plan saves, before rewriting: the low share of
    every map is followed through the graph (kept by per-channel and elementwise ops, averaged
    over concatenated channels, 0 past anything else), and each conv costs
    ``octave_macs_ratio(low share in, alpha_out)`` of its plain MACs."""
    low: dict[fx.Node, float] = {}
    total = kept = 0.0
    for node in gm.graph.nodes:
        if node in alpha_out:
            ai = low.get(node.args[0], 0.0) if isinstance(node.args[0], fx.Node) else 0.0
            ao = alpha_out[node]
            conv = modules[node.target]
            macs = node.meta["val"].numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)
            total += macs
            kept += macs * octave_macs_ratio(ai, ao, octave, depthwise=is_depthwise(conv), axes=1 if len(conv.kernel_size) == 1 else 2)
            low[node] = ao
        elif node.op == "call_function" and node.target in CONCAT:
            parts = [a for a in (node.args[0] if node.args and isinstance(node.args[0], (list, tuple)) else []) if isinstance(a, fx.Node)]
            chans = [a.meta["val"].shape[1] if isinstance(a.meta.get("val"), torch.Tensor) and a.meta["val"].dim() > 1 else 0 for a in parts]
            if sum(chans):
                low[node] = sum(low.get(a, 0.0) * c for a, c in zip(parts, chans)) / sum(chans)
        elif isinstance(node.meta.get("val"), torch.Tensor) and node.meta["val"].dim() == 4:
            shares = [low[a] for a in node.all_input_nodes if a in low]
            if shares:
                low[node] = max(shares)
    return 0.0 if total == 0 else 1.0 - kept / total


def block_of(node: fx.Node) -> Optional[str]:
    """The innermost enclosing module that is not a container: the conv's block (None at top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    block = None
    # The traced GraphModule rebuilds containers as plain Modules: the types come from the stack.
    for path, mtype in list(stack.values())[:-1]:
        if isinstance(mtype, type) and not issubclass(mtype, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            block = path
    return block


def unit_of(node: fx.Node, modules: Mapping[str, nn.Module]) -> Optional[str]:
    """The unit the measured latency plan decides for ``node``: the innermost enclosing module
    that is not a container (its block), or, for a conv at top level, the conv itself; None for
    the other top-level nodes (the stem's norms, the head), which no plan changes."""
    stack = node.meta.get("nn_module_stack") or {}
    unit = None
    own = str(node.target) if node.op == "call_module" else None
    for path, mtype in stack.values():
        if path != own and isinstance(mtype, type) and not issubclass(mtype, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            unit = path
    if unit is None and is_conv(node, modules):
        unit = own
    return unit


def latency_blocks(gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> dict[str, str]:
    """Blocks the latency policy keeps plain, with the reason."""
    plain: dict[str, str] = {}
    for node in gm.graph.nodes:
        if not is_conv(node, modules):
            continue
        conv = modules[node.target]
        block = block_of(node)
        if block is None or block in plain:
            continue
        if is_depthwise(conv):
            plain[block] = f"block {block} has a depthwise conv ({node.target}), memory-bound"
        elif conv.groups > 1 and conv.out_channels // conv.groups < LATENCY_MIN_GROUP_WIDTH:
            plain[block] = f"block {block} has a grouped conv of {conv.out_channels // conv.groups} channels per group"
    return plain
