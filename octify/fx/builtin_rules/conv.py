"""The rule for convolutions: Conv1d / Conv2d / Conv3d -> OctConv1d / 2d / 3d, with their weights."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from ...nn import OctConvTranspose2d
from ...nn._common import conv_padding, is_depthwise
from ...nn.partition import Partition
from ...rules import Octave, RuleContext, register_rule
from ..ops import CONVS, OCT_CONVS


@register_rule(*CONVS, plain=True)
def conv2d(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Conv2d -> OctConv2d with its weights (Conv1d -> OctConv1d, Conv3d -> OctConv3d: the octave
    on H and W, time kept); the input side follows the pair that arrives."""
    conv: nn.Module = ctx.original_module(node.target)
    plan = ctx.plan_of(node)
    x = args[0]
    if plan.keep_plain:
        if isinstance(x, Octave):
            x = ctx.merge(x, f"conv {node.target} stays plain: {plan.reason}")
        ctx.record_conv(node, 0.0, 0.0, plan.reason)
        return ctx.copy(node, (x,), kwargs)
    groups, depthwise = conv.groups, is_depthwise(conv)
    if isinstance(x, Octave):
        # The L->H / L->L paths run the kernel on the low branch: it must fit there (padding 0
        # on a small map may not), else the conv sees the merged plain tensor.
        low = tuple(x.low.meta["val"].shape[2:])
        if any(s + 2 * p < d * (k - 1) + 1 for s, p, k, d in zip(low, conv_padding(conv), conv.kernel_size, conv.dilation)):
            x = ctx.merge(x, f"conv {node.target}'s kernel {tuple(conv.kernel_size)} does not fit the {'x'.join(map(str, low))} low branch")
    if isinstance(x, Octave) and groups > 1 and not depthwise and x.partition.low_per_group(groups) is None:
        target = Partition.split(conv.in_channels, x.partition.alpha, groups)
        if target.low:
            x = ctx.align(x, target, f"grouped conv {node.target} needs the same number of low channels in each of its {groups} groups")
        else:
            x = ctx.merge(x, f"grouped conv {node.target} has groups too narrow to split")
    in_part = x.partition if isinstance(x, Octave) else Partition.all_high(conv.in_channels)
    if plan.alpha_out == 0.0:
        out_part = Partition.all_high(conv.out_channels)
    elif depthwise and isinstance(x, Octave):
        out_part = in_part  # a depthwise conv moves no channel between branches
    elif plan.low is not None:  # measured on calibration data (fx/assign.py)
        out_part = Partition(tuple(sorted(set(range(conv.out_channels)) - set(plan.low))), plan.low)
    elif plan.cuts and not (groups > 1 and not depthwise):  # its output is sliced into ranges
        out_part = Partition.split_at(conv.out_channels, plan.alpha_out, plan.cuts)
    else:
        out_part = Partition.split(conv.out_channels, plan.alpha_out, groups if not depthwise and groups > 1 else plan.split_groups)
    if not isinstance(x, Octave) and not out_part.low:
        ctx.record_conv(node, 0.0, 0.0, plan.reason or "alpha 0")
        return ctx.copy(node, (x,), kwargs)
    cls = next(OCT_CONVS[t] for t in type(conv).__mro__ if t in OCT_CONVS)
    layer = cls.from_conv(conv, octave=ctx.octave, stride_mode=plan.stride_mode, in_partition=in_part, out_partition=out_part)
    if not ctx.transfer_weights:
        layer.reset_parameters()
    name = ctx.install(node, layer)
    out = ctx.call_pair_module(name, x, out_part)
    ctx.record_conv(node, in_part.alpha, out_part.alpha, None)
    return out


@register_rule(nn.ConvTranspose2d, plain=True)
def conv_transpose2d(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """ConvTranspose2d -> OctConvTranspose2d (ungrouped, zero padding, the low paths on the grid)."""
    conv: nn.ConvTranspose2d = ctx.original_module(node.target)
    plan = ctx.plan_of(node)
    x = args[0]
    ref = (x.high if isinstance(x, Octave) else x).meta["val"]
    reason = plan.reason if plan.keep_plain else None
    if reason is None and (len(args) > 1 or kwargs):
        reason = "called with an output size"
    if reason is None and (conv.groups != 1 or conv.padding_mode != "zeros" or type(conv).forward is not nn.ConvTranspose2d.forward):
        reason = "a grouped or padded-mode transposed conv has no octave form yet"
    probe = None
    if reason is None:
        in_part = x.partition if isinstance(x, Octave) else Partition.all_high(conv.in_channels)
        out_part = Partition.all_high(conv.out_channels) if plan.alpha_out == 0.0 else Partition.split(conv.out_channels, plan.alpha_out)
        probe = OctConvTranspose2d(conv, in_part, out_part, ctx.octave)
        if (in_part.low or out_part.low) and not probe.keeps_grid(ref.shape[-2], ref.shape[-1]):
            reason = "its low paths would leave the octave grid of its output"
    if reason is not None or probe is None or not (probe.in_partition.low or probe.out_partition.low):
        if isinstance(x, Octave):
            x = ctx.merge(x, f"transposed conv {node.target} stays plain: {reason}")
        ctx.record_conv(node, 0.0, 0.0, reason or plan.reason or "alpha 0")
        return ctx.copy(node, (x,) + tuple(args[1:]), kwargs)
    if not ctx.transfer_weights:
        probe.reset_parameters()
    name = ctx.install(node, probe)
    out = ctx.call_pair_module(name, x, probe.out_partition)
    ctx.record_conv(node, probe.in_partition.alpha, probe.out_partition.alpha, None)
    return out
