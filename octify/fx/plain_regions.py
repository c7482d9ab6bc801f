"""Stage 3d, plain regions: the channel layouts that meet an op with no exact per-branch form are
kept plain whole.

Some ops mix values in a way that cannot be split between a full-resolution and a half-resolution
branch: a LayerNorm over the channels of each pixel (ConvNeXt's ``x.permute(0, 2, 3, 1)`` ->
LayerNorm, timm's ``LayerNorm2d``), whose statistics at a pixel need every channel there; and
attention over positions (BoTNet, HaloNet, LambdaNet, global-context blocks: the map flattened to
tokens, then a matrix product), where every position of one branch would meet every position of
the other. A pair reaching one is merged in front of it; in a ConvNeXt that is a merge in every
block and a split back at every residual sum, which costs more than the octave layers save. So the convs whose outputs reach such an op -- and every conv tied to them by a residual
sum or a depthwise conv (one channel layout: ``fx/assign.py``) -- keep alpha_out 0, with the
reason in the record: the region stays plain, the rest of the network is converted.
"""

from __future__ import annotations

import operator
from typing import Dict, List, Mapping, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .assign import layout_groups
from .ops import describe, is_conv, keeps_channel_positions
from .plan import ConvPlan

__all__ = ["keep_plain_regions"]

_PER_PIXEL_OVER_CHANNELS = (nn.LayerNorm, nn.Linear)
_PER_PIXEL_FUNCTIONS = (F.layer_norm, F.linear)


def _per_pixel_over_channels(node: fx.Node, modules: Mapping[str, nn.Module]) -> Optional[str]:
    """Why ``node`` has no per-branch form: a permute that puts the channels last, feeding a
    LayerNorm or Linear over them (they then mix the channels of each pixel); else None."""
    if node.op != "call_method" or node.target != "permute" or not node.args:
        return None
    dims = node.args[1:] if len(node.args) > 2 else node.args[1] if len(node.args) == 2 else ()
    val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() < 3 or not isinstance(dims, (list, tuple)):
        return None
    if [d % val.dim() if isinstance(d, int) else d for d in dims][-1:] != [1]:
        return None
    for user in node.users:
        mod = modules.get(user.target) if user.op == "call_module" else None
        if isinstance(mod, _PER_PIXEL_OVER_CHANNELS) or (user.op == "call_function" and user.target in _PER_PIXEL_FUNCTIONS):
            return (
                f"its channels are normalised or mixed at each pixel ({describe(user, modules)} after a permute): "
                "no exact form per branch, and a merge in every block costs more than it saves: the region stays plain"
            )
    return None


_MATMULS = (torch.matmul, torch.bmm, torch.einsum, operator.matmul, F.scaled_dot_product_attention, "matmul", "bmm")
# Ops that only rearrange values (shape, order): what a map goes through on its way to tokens.
_REARRANGE = ("reshape", "view", "flatten", "permute", "transpose", "contiguous", "unfold", "split", "chunk", "unbind",
              torch.reshape, torch.flatten, torch.permute, torch.transpose, torch.split, torch.chunk, torch.unbind,
              operator.getitem, "softmax", torch.softmax, F.softmax, operator.mul, "mul")


def _attention_maps(node: fx.Node) -> List[fx.Node]:
    """The 4-D maps with more than one position that a matrix product takes as tokens: reached
    back from its operands through ops that only rearrange (or scale) values."""
    if node.target not in _MATMULS or node.op not in ("call_function", "call_method"):
        return []
    out, frontier, seen = [], list(node.all_input_nodes), set()
    while frontier:
        n = frontier.pop()
        if n in seen:
            continue
        seen.add(n)
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor) and val.dim() == 4 and val.shape[2:].numel() > 1:
            out.append(n)
        elif n.op in ("call_function", "call_method") and n.target in _REARRANGE:
            frontier.extend(n.all_input_nodes)
    return out


# A part of a conv's channels (``q, k, v = torch.split(qkv(x), ...)``) is still that conv's output.
_CHANNEL_PARTS = ("split", "chunk", torch.split, torch.chunk, operator.getitem, "narrow")


def _producing_convs(node: fx.Node, modules: Mapping[str, nn.Module]) -> List[fx.Node]:
    """The convs whose output reaches ``node`` through ops that keep every channel in place."""
    out, frontier, seen = [], [node], set()
    while frontier:
        n = frontier.pop()
        if n in seen or not isinstance(n, fx.Node):
            continue
        seen.add(n)
        if is_conv(n, modules):
            out.append(n)
        elif keeps_channel_positions(n, modules) or (n.op in ("call_function", "call_method") and n.target in _CHANNEL_PARTS):
            frontier.extend(n.all_input_nodes)
    return out


def keep_plain_regions(gm: fx.GraphModule, plans: Dict[fx.Node, ConvPlan]) -> int:
    """Set alpha_out 0 (with the reason) on every conv of a channel layout that meets an op with
    no per-branch form; returns how many convs that changed."""
    modules = dict(gm.named_modules())
    groups, _ = layout_groups(gm, modules)
    group_of = {n: g for g in groups for n in g}
    changed = 0
    for node in gm.graph.nodes:
        why = _per_pixel_over_channels(node, modules)
        starts = [node.args[0]] if why is not None else []
        maps = [] if why is not None else _attention_maps(node)
        if maps:
            why = (
                f"attention over positions ({describe(node, modules)} of the flattened map): no exact form per branch, "
                "and a merge in every block costs more than it saves: the region stays plain"
            )
            starts = maps
        convs = [c for start in starts for c in _producing_convs(start, modules)]
        for conv in convs:
            for member in group_of.get(conv, [conv]):
                p = plans.get(member)
                if p is not None and p.alpha_out > 0.0 and not p.keep_plain:
                    p.alpha_out, p.reason = 0.0, why
                    changed += 1
    return changed
