"""Rules for ops that combine or cut tensors: add / sub / mul / div, concatenation and chunk/split
over channels, and indexing the tuples they make."""

from __future__ import annotations

from typing import Any

import operator

import torch
import torch.fx as fx

from ...nn.partition import Partition
from ...rules import Decline, Octave, RuleContext, register_rule
from ..ops import ARITHMETIC, CHANNEL_SPLITS, CONCAT, channel_split_sizes


def _branch_operand(ctx: RuleContext, node: fx.Node, value: Any, part: Partition, high_hw: tuple) -> tuple[Any, Any]:
    """The (high, low) operands for ``value`` facing a pair of partition ``part``."""
    if isinstance(value, Octave):
        return value.high, value.low
    if not isinstance(value, fx.Node):
        return value, value  # a Python scalar
    val = value.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.numel() == 1:
        return value, value  # a scalar, or a one-element tensor (a learnable scale): the same on both
    if val.dim() == len(high_hw) + 2 and val.shape[2:].numel() == 1:
        if val.shape[1] == 1:
            return value, value  # broadcast over every channel
        if val.shape[1] == part.channels:
            pair = ctx.split(value, part, "per-channel operand")  # squeeze-excitation scale, per-channel bias
            return pair.high, pair.low
    if val.dim() == len(high_hw) + 1 and val.shape[0] == part.channels and val.shape[1:].numel() == 1:
        # A per-channel parameter without the batch dim (a layer scale of shape (C, 1, 1)): its
        # channels picked per branch.
        return (ctx.emit("call_function", operator.getitem, (value, list(part.high))),
                ctx.emit("call_function", operator.getitem, (value, list(part.low))))
    if val.dim() == len(high_hw) + 2 and val.shape[1] == part.channels and tuple(val.shape[2:]) == tuple(high_hw):
        pair = ctx.split(value, part, f"{ctx.describe(node)} combines a pair with a plain map")
        return pair.high, pair.low
    raise Decline(f"it combines a pair with a plain tensor of shape {tuple(val.shape)}")


@register_rule(*ARITHMETIC)
def arithmetic(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """add / sub / mul / div of a pair with a pair, a per-channel tensor, a plain map or a scalar."""
    if len(args) < 2:
        raise Decline("it has fewer than two operands")
    a, b, rest = args[0], args[1], args[2:]
    if any(isinstance(v, Octave) for v in (*rest, *kwargs.values())):
        raise Decline("a pair is passed beyond the two operands")
    if isinstance(a, Octave) and isinstance(b, Octave) and a.partition != b.partition:
        # Keep the partition with more low channels (the cheaper one downstream); ties keep a's.
        if len(b.partition.low) > len(a.partition.low):
            a = ctx.align(a, b.partition, "operands of different partitions")
        else:
            b = ctx.align(b, a.partition, "operands of different partitions")
    ref = a if isinstance(a, Octave) else b
    part = ref.partition
    high_hw = tuple(ref.high.meta["val"].shape[2:])
    ah, al = _branch_operand(ctx, node, a, part, high_hw)
    bh, bl = _branch_operand(ctx, node, b, part, high_hw)
    try:
        h = ctx.emit(node.op, node.target, (ah, bh, *rest), kwargs)
        l = ctx.emit(node.op, node.target, (al, bl, *rest), kwargs)
    except Exception as e:  # a shape the op cannot broadcast
        raise Decline(str(e)) from None
    why = ctx.low_fits(h, l)
    if why is not None:
        raise Decline(why)
    ctx.threaded(node)
    return Octave(h, l, part)


@register_rule("expand_as")
def expand_as(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``gate.expand_as(x)`` with ``x`` a pair: the per-channel gate of a channel attention (ECA's
    ``x * y.expand_as(x)``) expanded to each branch, as a pair; no merge of ``x``."""
    y, x = (args[0], args[1]) if len(args) > 1 else (args[0], kwargs.get("other"))
    if not isinstance(x, Octave):
        raise Decline("the pair is not what it expands to")
    yh, yl = _branch_operand(ctx, node, y, x.partition, tuple(x.high.meta["val"].shape[2:]))
    h = ctx.emit("call_method", "expand_as", (yh, x.high))
    l = ctx.emit("call_method", "expand_as", (yl, x.low))
    ctx.threaded(node)
    return Octave(h, l, x.partition)


@register_rule(*CONCAT)
def cat(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """torch.cat over channels: per-branch cat, the partitions composed; a plain part is all high."""
    tensors = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0))
    ref = next((t for t in tensors if isinstance(t, Octave)), None) if isinstance(tensors, (list, tuple)) else None
    ndim = ref.high.meta["val"].dim() if ref is not None else 4
    if ref is None or not isinstance(dim, int) or dim % ndim != 1:
        raise Decline(f"it concatenates over dim {dim}, not over channels")
    hw = tuple(ref.high.meta["val"].shape[2:])
    highs, lows, part = [], [], Partition((), ())
    for t in tensors:
        if isinstance(t, Octave):
            if tuple(t.high.meta["val"].shape[2:]) != hw:
                raise Decline("its pairs have different sizes")
            highs.append(t.high)
            lows.append(t.low)
            part = part.concat(t.partition)
        else:
            val = t.meta.get("val") if isinstance(t, fx.Node) else None
            if not isinstance(val, torch.Tensor) or val.dim() != ndim or tuple(val.shape[2:]) != hw:
                raise Decline("it concatenates a pair with a tensor of another size")
            highs.append(t)
            part = part.concat(Partition.all_high(val.shape[1]))
    h = ctx.emit("call_function", torch.cat, (highs, 1))
    l = lows[0] if len(lows) == 1 else ctx.emit("call_function", torch.cat, (lows, 1))
    ctx.threaded(node)
    return Octave(h, l, part)


@register_rule(*CHANNEL_SPLITS)
def split_channels(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """chunk / split over channels: each part a pair of its own, when every part has channels on
    both branches (the plan splits the conv in front per part for that)."""
    x = args[0] if args else None
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    sizes = channel_split_sizes(node, x.partition.channels)
    if sizes is None:
        raise Decline("it does not cut over channels into sizes known when converting")
    parts, start = [], 0
    for k, size in enumerate(sizes):
        parts.append(_channel_range(ctx, x, start, start + size, f"part {k}"))
        start += size
    ctx.threaded(node)
    return tuple(parts)


def _channel_range(ctx: RuleContext, x: Octave, start: int, end: int, what: str) -> Any:
    """Channels [start, end) of a pair, as a pair: a narrow of each branch (a sorted partition
    keeps each branch's channels of a range together); a range of high channels only is a plain
    full-resolution tensor, exactly those channels."""
    high = [i for i, c in enumerate(x.partition.high) if start <= c < end]
    low = [i for i, c in enumerate(x.partition.low) if start <= c < end]
    if high and not low and high == list(range(high[0], high[0] + len(high))):
        return ctx.emit("call_method", "narrow", (x.high, 1, high[0], len(high)))
    if not high or not low:
        raise Decline(f"{what} would hold channels of one branch only")
    h = ctx.emit("call_method", "narrow", (x.high, 1, high[0], len(high)))
    l = ctx.emit("call_method", "narrow", (x.low, 1, low[0], len(low)))
    part = Partition(tuple(x.partition.high[i] - start for i in high), tuple(x.partition.low[i] - start for i in low))
    return Octave(h, l, part)


@register_rule(operator.getitem)
def index_parts(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """``parts[i]`` of a tuple of pairs (what chunk/split gave): that pair; ``x[:, a:b]`` of a
    pair: those channels, as a pair."""
    seq, index = args[0], args[1] if len(args) > 1 else None
    if isinstance(seq, (tuple, list)) and isinstance(index, int):
        return seq[index]
    if isinstance(seq, Octave) and isinstance(index, tuple) and len(index) >= 2:
        # x[:, a:b] (trailing full slices or ...): a range of channels
        rest_full = all(i == slice(None) or i is Ellipsis for i in index[2:])
        channels = index[1]
        if index[0] == slice(None) and rest_full and isinstance(channels, slice) and channels.step in (None, 1):
            total = seq.partition.channels
            start, end, _ = channels.indices(total)
            if not any(isinstance(v, fx.Node) for v in (channels.start, channels.stop)) and end > start:
                out = _channel_range(ctx, seq, start, end, f"channels {start}:{end}")
                ctx.threaded(node)
                return out
    raise Decline("it indexes a pair other than by a range of channels")
