"""Rules for what changes a map's size (F.interpolate, nn.Upsample, padding) and for reading a
pair's shape."""

from __future__ import annotations

import builtins
from typing import Any

import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ...nn._common import low_size
from ...nn.functional import pair_size
from ...nn.partition import Partition
from ...rules import Decline, Octave, RuleContext, register_rule
from ..ops import INTERPOLATE_PARAMS, PAD_MODULES, RESAMPLE_MODULES, SAME_AS_HIGH_ATTRIBUTES


def _interpolate_params(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> dict:
    if node.op == "call_module":
        m = ctx.original_module(node.target)
        return dict(size=m.size, scale_factor=m.scale_factor, mode=m.mode, align_corners=m.align_corners,
                    recompute_scale_factor=getattr(m, "recompute_scale_factor", None))
    params = dict(zip(INTERPOLATE_PARAMS, args[1:]))
    params.update(kwargs)
    return params


@register_rule(F.interpolate, *RESAMPLE_MODULES)
def resample(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Each branch resampled alike (a scale factor keeps the low branch on the octave grid of
    the resampled high one when the sizes divide); otherwise (``size=``, odd sizes) the low branch
    is resampled to the octave grid of the high branch's new size. Exact at octave 1."""
    x = args[0] if args else None
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    try:
        return ctx.per_branch(node, args, kwargs)
    except Decline as first:
        if "octave grid" not in str(first):
            raise
    params = _interpolate_params(ctx, node, args, kwargs)
    h = ctx.emit(node.op, node.target, (x.high, *args[1:]), kwargs)
    hh, hw = h.meta["val"].shape[-2:]
    low_params = {k: v for k, v in params.items() if k in ("mode", "align_corners", "antialias")}
    l = ctx.emit("call_function", F.interpolate, (x.low,), dict(low_params, size=(low_size(hh, ctx.octave), low_size(hw, ctx.octave))))
    ctx.threaded(node)
    return Octave(h, l, x.partition)


@register_rule(F.pad, *PAD_MODULES)
def pad(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Padding of H and W: the high branch as given; the low branch by what keeps it on the
    octave grid of the padded high one (a pad of p before becomes p // octave, the rest after).
    Exact at octave 1."""
    x = args[0] if args else None
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    if node.op == "call_module":
        m = ctx.original_module(node.target)
        pads, value = tuple(m.padding), getattr(m, "value", 0.0)
        mode = {"ReflectionPad2d": "reflect", "ReplicationPad2d": "replicate", "CircularPad2d": "circular"}.get(type(m).__name__, "constant")
    else:
        pads = tuple(args[1] if len(args) > 1 else kwargs["pad"])
        mode = args[2] if len(args) > 2 else kwargs.get("mode", "constant")
        value = args[3] if len(args) > 3 else kwargs.get("value", None)
    if len(pads) not in (2, 4) or any(isinstance(p, fx.Node) for p in pads):
        raise Decline("it pads other dimensions than H and W, or by amounts known only at run time")
    hv = x.high.meta["val"]
    sizes = [hv.shape[-1], hv.shape[-2]]  # F.pad order: W first
    low_pads = []
    for axis in range(len(pads) // 2):
        before, after = pads[2 * axis], pads[2 * axis + 1]
        size = sizes[axis]
        lb = before // ctx.octave
        la = low_size(size + before + after, ctx.octave) - low_size(size, ctx.octave) - lb
        if lb < 0 or la < 0:
            raise Decline("it crops, which the low grid cannot follow")
        low_pads += [lb, la]
    low_kwargs = {"mode": mode} if mode != "constant" or value is None else {"mode": mode, "value": value}
    return ctx.per_branch_with(
        node, x,
        lambda high: ctx.emit(node.op, node.target, (high, *args[1:]), kwargs),
        lambda low: ctx.emit("call_function", F.pad, (low, tuple(low_pads)), low_kwargs),
    )


def _size_node(ctx: RuleContext, x: Octave, dim: Any = None) -> fx.Node:
    extra = () if dim is None else (dim,)
    node = ctx.emit("call_function", pair_size, ((x.high, x.low), x.partition.channels, *extra))
    node.meta["is_wrapped"] = True  # re-tracing the generated code (pickling) keeps it one call
    return node


@register_rule(builtins.getattr)
def read_attribute(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``x.shape``, ``x.ndim``, ``x.dtype``, ``x.device`` of a pair: the plain tensor's, no merge."""
    x, name = (args + (None, None))[:2]
    if not isinstance(x, Octave) or kwargs or len(args) != 2:
        raise Decline("it reads an attribute of something else than a pair")
    if name == "shape":
        return _size_node(ctx, x)
    if name in SAME_AS_HIGH_ATTRIBUTES:
        return ctx.emit("call_function", builtins.getattr, (x.high, name))
    raise Decline(f"it reads .{name} of the pair")


@register_rule("size")
def size(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``x.size()`` / ``x.size(dim)`` of a pair: the plain tensor's, no merge."""
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if not isinstance(x, Octave) or len(args) > 2 or set(kwargs) - {"dim"}:
        raise Decline("it is not x.size() or x.size(dim) of a pair")
    return _size_node(ctx, x, dim)


@register_rule("dim")
def dim(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``x.dim()`` of a pair: the high branch's (both are 4-D)."""
    if not isinstance(args[0], Octave) or len(args) != 1 or kwargs:
        raise Decline("it is not x.dim() of a pair")
    return ctx.emit("call_method", "dim", (args[0].high,))


def _whole_blocks(partition: Partition, block: int) -> bool:
    low = set(partition.low)
    return all(len({c in low for c in range(g, g + block)}) == 1 for g in range(0, partition.channels, block))


@register_rule(nn.PixelShuffle, F.pixel_shuffle)
def pixel_shuffle(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """PixelShuffle(r) per branch: each output channel comes from a block of r^2 input channels,
    so every block must lie on one branch (aligned to whole blocks when it does not)."""
    x = args[0] if args else None
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    r = ctx.original_module(node.target).upscale_factor if node.op == "call_module" else (args[1] if len(args) > 1 else kwargs["upscale_factor"])
    block = r * r
    part = x.partition
    if not _whole_blocks(part, block):
        n_low = (len(part.low) // block) * block
        if n_low == 0 or n_low == part.channels:
            raise Decline(f"its blocks of {block} channels cannot be split between the branches")
        cut = part.channels - n_low
        x = ctx.align(x, Partition(tuple(range(cut)), tuple(range(cut, part.channels))),
                      f"PixelShuffle {node.target} needs each block of {block} channels on one branch")
        part = x.partition
    out = ctx.per_branch_with(node, x, lambda v: ctx.emit("call_function", F.pixel_shuffle, (v, r)))
    high = tuple(sorted({c // block for c in part.high}))
    low = tuple(sorted({c // block for c in part.low}))
    return Octave(out.high, out.low, Partition(high, low))


@register_rule(nn.PixelUnshuffle, F.pixel_unshuffle)
def pixel_unshuffle(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """PixelUnshuffle(r) per branch: input channel c becomes channels c*r^2 .. c*r^2 + r^2 - 1 on its branch."""
    x = args[0] if args else None
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    r = ctx.original_module(node.target).downscale_factor if node.op == "call_module" else (args[1] if len(args) > 1 else kwargs["downscale_factor"])
    block = r * r
    out = ctx.per_branch_with(node, x, lambda v: ctx.emit("call_function", F.pixel_unshuffle, (v, r)))
    part = x.partition
    high = tuple(c * block + i for c in part.high for i in range(block))
    low = tuple(c * block + i for c in part.low for i in range(block))
    return Octave(out.high, out.low, Partition(high, low))
