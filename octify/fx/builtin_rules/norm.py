"""Rules for normalisation layers: one norm per branch, statistics and affine weights split."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ...nn import OctGroupNorm, OctNormAct
from ...nn.functional import group_norm_pair
from ...nn.groupnorm import whole_groups
from ...nn.partition import Partition
from ...rules import Decline, Octave, RuleContext, register_rule
from ..ops import BATCH_NORMS, NORM_ACT_CLASSES


@register_rule(*BATCH_NORMS)
def batch_norm2d(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """BatchNorm2d -> OctBatchNorm2d (1d, 3d alike), weights and running statistics split by the partition."""
    x = args[0]
    if not isinstance(x, Octave) or kwargs or len(args) != 1:
        raise Decline("it is called with more than one pair argument")
    bn = ctx.original_module(node.target)
    layer = BATCH_NORMS[next(t for t in type(bn).__mro__ if t in BATCH_NORMS)].from_bn(bn, x.partition)
    if not ctx.transfer_weights:
        for bn in (layer.bn_h, layer.bn_l):
            if bn is not None:
                bn.reset_parameters()
    name = ctx.install(node, layer)
    ctx.threaded(node)
    return ctx.call_pair_module(name, x, x.partition)


def _whole_group_partition(channels: int, groups: int, alpha: float) -> Partition:
    """The last floor(alpha * groups) groups low: a partition a GroupNorm can follow."""
    per = channels // groups
    n_low = int(alpha * groups + 1e-9)
    cut = (groups - n_low) * per
    return Partition(tuple(range(cut)), tuple(range(cut, channels)))


@register_rule(nn.GroupNorm)
def group_norm(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """GroupNorm -> OctGroupNorm when each group lies on one branch (after an align if needed)."""
    x = args[0]
    if not isinstance(x, Octave) or kwargs or len(args) != 1:
        raise Decline("it is called with more than one pair argument")
    gn: nn.GroupNorm = ctx.original_module(node.target)
    split = whole_groups(x.partition, gn.num_groups)
    if split is None or 0 in split:
        target = _whole_group_partition(gn.num_channels, gn.num_groups, x.partition.alpha)
        if not target.low or not target.high:
            # Too few groups to put whole ones on both branches (GroupNorm(1, C)): statistics over both.
            weight = ctx.emit("get_attr", f"{node.target}.weight") if gn.affine else None
            bias = ctx.emit("get_attr", f"{node.target}.bias") if gn.affine else None
            return _spanning(ctx, node, x, gn.num_groups, weight, bias, gn.eps)
        x = ctx.align(x, target, f"GroupNorm {node.target} needs each of its {gn.num_groups} groups on one branch")
    layer = OctGroupNorm.from_gn(gn, x.partition)
    name = ctx.install(node, layer)
    ctx.threaded(node)
    return ctx.call_pair_module(name, x, x.partition)


def _spanning(ctx: RuleContext, node: fx.Node, x: Octave, groups: int, weight: Any, bias: Any, eps: float) -> Octave:
    """Group norm with groups across both branches: ``group_norm_pair`` (exact at octave 1)."""
    part = x.partition
    out = ctx.emit("call_function", group_norm_pair, (x.high, x.low, list(part.high), list(part.low), groups, weight, bias, eps))
    ctx.threaded(node)
    return Octave(ctx.getitem(out, 0), ctx.getitem(out, 1), part)


@register_rule(F.group_norm)
def group_norm_function(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``F.group_norm(x, groups, weight, bias, eps)`` of a pair (timm's ``GroupNorm1``, PoolFormer's
    norm over every channel): statistics over both branches, as the plain tensor would have them."""
    names = ("input", "num_groups", "weight", "bias", "eps")
    call = {**dict(zip(names, args)), **kwargs}
    x, groups = call.get("input"), call.get("num_groups")
    if not isinstance(x, Octave):
        raise Decline("the pair is not its input")
    if not isinstance(groups, int) or x.partition.channels % groups:
        raise Decline(f"its number of groups ({groups}) is not known when converting or does not divide the channels")
    if any(isinstance(call.get(k), Octave) for k in ("weight", "bias")):
        raise Decline("its affine weights are a pair")
    return _spanning(ctx, node, x, groups, call.get("weight"), call.get("bias"), call.get("eps", 1e-5))


@register_rule(*NORM_ACT_CLASSES)
def norm_act(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """BatchNormAct2d -> OctNormAct: one batch norm per branch, then dropout and the activation."""
    x = args[0]
    if not isinstance(x, Octave) or kwargs or len(args) != 1:
        raise Decline("it is called with more than one pair argument")
    m = ctx.original_module(node.target)
    if not (isinstance(m, nn.BatchNorm2d) and isinstance(getattr(m, "act", None), nn.Module) and isinstance(getattr(m, "drop", None), nn.Module)):
        raise Decline(f"{type(m).__name__} is not a batch norm with drop and act submodules")
    layer = OctNormAct.from_norm_act(m, x.partition)
    if not ctx.transfer_weights:
        for bn in (layer.bn.bn_h, layer.bn.bn_l):
            if bn is not None:
                bn.reset_parameters()
    name = ctx.install(node, layer)
    ctx.threaded(node)
    return ctx.call_pair_module(name, x, x.partition)
