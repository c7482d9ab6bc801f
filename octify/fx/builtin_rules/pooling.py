"""Rules for pooling: local pooling per branch (on the octave grid), global and adaptive pooling."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch.fx as fx
from torch import nn

from ...nn import ChannelMerge
from ...nn._resample import low_shape, octave_axes
from ...rules import Decline, Octave, RuleContext, register_rule
from ..ops import ADAPTIVE_POOL_FUNCTIONS, GLOBAL_POOLS, LOCAL_POOL_MODULES, POOL_FUNCTION_PARAMS, POOL_MODULE_FUNCTIONS


def _pool_call(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Tuple[Callable, dict]:
    """The pooling function a node calls and its parameters by name (a module's attributes, or
    the call's positional and keyword arguments)."""
    if node.op == "call_module":
        m = ctx.original_module(node.target)
        fn = next(f for t, f in POOL_MODULE_FUNCTIONS.items() if isinstance(m, t))
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
            params = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, return_indices=m.return_indices)
        else:
            params = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, count_include_pad=m.count_include_pad)
            if getattr(m, "divisor_override", None) is not None:
                params["divisor_override"] = m.divisor_override
        return fn, params
    params = dict(zip(POOL_FUNCTION_PARAMS[node.target], args[1:]))
    params.update(kwargs)
    return node.target, params


def _too_small(fn: Callable, params: dict, low: fx.Node) -> Optional[str]:
    """Why the pooling window does not fit the low map (in octify's words), or None. Checked
    before the op is tried there: a failing try on fake tensors is a logged traceback in torch."""
    shape = list(low.meta["val"].shape[2:])
    n = len(shape)
    # A size read from the input (``F.avg_pool2d(x, x.size(2))``) is a node: its value at the example.
    value = lambda v: v.meta.get("val") if isinstance(v, fx.Node) else v  # noqa: E731
    as_tuple = lambda v, d: tuple(map(value, v)) if isinstance(v, (tuple, list)) else (d if v is None else value(v),) * n  # noqa: E731
    kernel = as_tuple(params.get("kernel_size"), 1)
    padding, dilation = as_tuple(params.get("padding", 0), 0), as_tuple(params.get("dilation", 1), 1)
    if not all(isinstance(v, int) for v in (*kernel, *padding, *dilation)):
        return None  # not known here: the op is tried, and a failure declines
    for size, k, p, d in zip(shape, kernel, padding, dilation):
        if size + 2 * p < d * (k - 1) + 1:
            name = getattr(fn, "__name__", str(fn))
            return f"{name} kernel {'x'.join(map(str, kernel))} on the {'x'.join(map(str, shape))} low map: the window does not fit"
    return None


def _whole_map(params: dict, high: fx.Node) -> bool:
    """Whether the window is the whole (unpadded) map: ``F.avg_pool2d(x, x.size(2))``, the SE
    blocks of hand-written CIFAR models, pool globally with a local op."""
    shape = tuple(high.meta["val"].shape[2:])
    value = lambda v: v.meta.get("val") if isinstance(v, fx.Node) else v  # noqa: E731
    kernel = params.get("kernel_size")
    kernel = tuple(map(value, kernel)) if isinstance(kernel, (tuple, list)) else (value(kernel),) * len(shape)
    pads = params.get("padding", 0)
    dilation = params.get("dilation", 1)
    return (
        kernel == shape and params.get("divisor_override") is None
        and all(p == 0 for p in (pads if isinstance(pads, (tuple, list)) else (pads,)))
        and all(d == 1 for d in (dilation if isinstance(dilation, (tuple, list)) else (dilation,)))
    )


def _global_window(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict, fn: Callable, x: Octave) -> fx.Node:
    """A window over the whole map is global pooling: the high branch as called, the low branch
    pooled whole, the channels joined in their original order as one (N, C, 1, ...) descriptor."""
    ndim = x.high.meta["val"].dim()
    kind = "max" if "max" in getattr(fn, "__name__", "") else "avg"
    low_fn = next(f for t, f in ADAPTIVE_POOL_FUNCTIONS.items() if kind in f.__name__ and f.__name__.endswith(f"{ndim - 2}d"))
    h = ctx.emit(node.op, node.target, (x.high, *args[1:]), kwargs)
    l = ctx.emit("call_function", low_fn, (x.low, 1))
    name = ctx.add_module("pool_merge", ChannelMerge(x.partition))
    ctx.threaded(node)
    return ctx.emit("call_module", name, ((h, l),))


@register_rule(*LOCAL_POOL_MODULES, *POOL_FUNCTION_PARAMS)
def pool2d(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Max / average pooling per branch (1-, 2- and 3-D). The low grid is a ceil grid (ceil(H / octave)), so when
    floor-mode pooling takes the low branch off the grid of the pooled high branch, the low
    branch pools in ceil mode, which lands on it (135 -> 67 high, 68 -> 34 low). A window larger
    than the low map declines (the pair is merged before it)."""
    fn, params = _pool_call(ctx, node, args, kwargs)
    x = args[0] if args else None
    if isinstance(x, Octave) and _whole_map(params, x.high):
        return _global_window(ctx, node, args, kwargs, fn, x)
    if isinstance(x, Octave):
        why = _too_small(fn, params, x.low)
        if why is not None:
            raise Decline(why)
    try:
        return ctx.per_branch(node, args, kwargs)
    except Decline as first:
        if not isinstance(x, Octave) or "octave grid" not in str(first):
            raise
    if params.pop("return_indices", False):
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
