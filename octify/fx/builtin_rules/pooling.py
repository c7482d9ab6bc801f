"""Rules for pooling: local pooling per branch (on the octave grid), global and adaptive pooling."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from ...nn import ChannelMerge
from ...nn._resample import low_shape, octave_axes
from ...rules import Decline, Octave, RuleContext, register_rule
from ..ops import ADAPTIVE_POOL_FUNCTIONS, GLOBAL_POOLS, LOCAL_POOL_MODULES, POOL_FUNCTION_PARAMS, POOL_MODULE_FUNCTIONS


@register_rule(*LOCAL_POOL_MODULES, *POOL_FUNCTION_PARAMS)
def pool2d(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Max / average pooling per branch (1-, 2- and 3-D). The low grid is a ceil grid (ceil(H / octave)), so when
    floor-mode pooling takes the low branch off the grid of the pooled high branch, the low
    branch pools in ceil mode, which lands on it (135 -> 67 high, 68 -> 34 low)."""
    try:
        return ctx.per_branch(node, args, kwargs)
    except Decline as first:
        x = args[0] if args else None
        if not isinstance(x, Octave) or "octave grid" not in str(first):
            raise
    if node.op == "call_module":
        m = ctx.original_module(node.target)
        fn = next(f for t, f in POOL_MODULE_FUNCTIONS.items() if isinstance(m, t))
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            if m.return_indices:
                raise Decline("it returns indices")
            params = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation)
        else:
            params = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, count_include_pad=m.count_include_pad)
            if getattr(m, "divisor_override", None) is not None:
                params["divisor_override"] = m.divisor_override
    else:
        fn = node.target
        params = dict(zip(POOL_FUNCTION_PARAMS[fn], args[1:]))
        params.update(kwargs)
        if params.get("return_indices"):
            raise Decline("it returns indices")
    params["ceil_mode"] = True
    h = ctx.emit(node.op, node.target, (x.high, *args[1:]), kwargs)
    # Ceil mode first; where the low branch still falls short (a 7x7 low branch pooled 3/2 gives
    # 3x3, the grid of a 7x7 high output is 4x4), one more pixel of padding, up to kernel // 2.
    kernel = params["kernel_size"] if isinstance(params["kernel_size"], int) else max(params["kernel_size"])
    pad0 = params.get("padding", 0)
    if isinstance(pad0, (tuple, list)) and len(set(pad0)) == 1:
        pad0 = pad0[0]
    pads = [pad0] + ([p for p in range(pad0 + 1, kernel // 2 + 1)] if isinstance(pad0, int) else [])
    for pad in pads:
        l = ctx.emit("call_function", fn, (x.low,), dict(params, padding=pad))
        why = ctx.low_fits(h, l)
        if why is None:
            ctx.threaded(node)
            return Octave(h, l, x.partition)
        ctx.erase(l)
    ctx.erase(h)
    raise Decline(why)


# -- global pooling: a pair in, a plain (N, C, 1, 1) or (N, C) tensor out ------------------------
def _is_one(size: Any) -> bool:
    if isinstance(size, int):
        return size == 1
    return isinstance(size, (tuple, list)) and all(s == 1 for s in size)


@register_rule(*GLOBAL_POOLS)
def global_pool(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Global pooling of each branch, then the channels back in the original order (exact)."""
    x = args[0]
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    rest_args, rest_kwargs = args[1:], dict(kwargs)
    if node.op == "call_module" or node.target in ADAPTIVE_POOL_FUNCTIONS.values():
        if node.op == "call_module":
            size = ctx.original_module(node.target).output_size
        else:
            size = rest_args[0] if rest_args else rest_kwargs.get("output_size")
        if not _is_one(size):
            return _adaptive_to_size(ctx, node, x, size)
    else:
        dim = rest_args[0] if rest_args else rest_kwargs.get("dim")
        ndim = x.high.meta["val"].dim()
        dims = {d % ndim for d in dim} if isinstance(dim, (tuple, list)) else ({dim % ndim} if isinstance(dim, int) else None)
        if dims != set(range(2, ndim)):
            raise Decline(f"it averages over {dim}, not over every spatial axis")
    h = ctx.emit(node.op, node.target, (x.high, *rest_args), rest_kwargs)
    l = ctx.emit(node.op, node.target, (x.low, *rest_args), rest_kwargs)
    name = ctx.add_module("pool_merge", ChannelMerge(x.partition))
    ctx.threaded(node)
    return ctx.emit("call_module", name, ((h, l),))


def _adaptive_to_size(ctx: RuleContext, node: fx.Node, x: Octave, size: Any) -> Octave:
    """Adaptive pooling to S x S: the high branch to S, the low branch to its octave grid ceil(S / octave)."""
    ndim = x.high.meta["val"].dim()
    sizes = (size,) * (ndim - 2) if isinstance(size, int) else tuple(size)
    if any(s is None for s in sizes):
        raise Decline("it keeps an input dimension (output_size None)")
    low = tuple(low_shape(list(sizes), ctx.octave, octave_axes(ndim)))
    mod = ctx.original_module(node.target) if node.op == "call_module" else None
    fn = node.target if mod is None else next(f for t, f in ADAPTIVE_POOL_FUNCTIONS.items() if isinstance(mod, t))
    if mod is not None and getattr(mod, "return_indices", False):
        raise Decline("it returns indices")
    h = ctx.emit("call_function", fn, (x.high, sizes))
    l = ctx.emit("call_function", fn, (x.low, low))
    ctx.threaded(node)
    return Octave(h, l, x.partition)
