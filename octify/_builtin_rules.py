"""The built-in octave rules: convs, batch norm, elementwise ops, pooling, arithmetic, concatenation."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ._modules import ChannelMerge, SharedStochasticDepth
from ._plan import _padding, is_depthwise
from ._rewrite import Rewriter, describe
from .nn.batchnorm import OctBatchNorm2d
from .nn.octconv import OctConv2d
from .nn.partition import Partition
from .rules import Decline, Octave, passthrough, per_branch, register_rule


def _install(rw: Rewriter, node: fx.Node, module: nn.Module) -> str:
    """Put ``module`` at the qualified name of the module it replaces (a second call site of a
    shared module gets a name of its own)."""
    name = str(node.target)
    if name in rw.new_modules:
        return rw.set_module(f"{name.replace('.', '_')}_octify{len(rw.new_modules)}", module, like=name)
    return rw.set_module(name, module)


# -- convolution ---------------------------------------------------------------------------------
@register_rule(nn.Conv2d, plain=True)
def conv2d(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Conv2d -> OctConv2d with its weights; the input side follows the pair that arrives."""
    conv: nn.Conv2d = rw.original_module(node.target)
    plan = rw.plans[node]
    x = args[0]
    if plan.keep_plain:
        if isinstance(x, Octave):
            x = rw.merge(x, f"conv {node.target} stays plain: {plan.reason}")
        rw.conv_record(node, 0.0, 0.0, plan.reason)
        return rw.copy(node, (x,), kwargs)
    groups, depthwise = conv.groups, is_depthwise(conv)
    if isinstance(x, Octave):
        # The L->H / L->L paths run the kernel on the low branch: it must fit there (padding 0
        # on a small map may not), else the conv sees the merged plain tensor.
        lh, lw = x.low.meta["val"].shape[-2:]
        if any(s + 2 * p < d * (k - 1) + 1 for s, p, k, d in zip((lh, lw), _padding(conv), conv.kernel_size, conv.dilation)):
            x = rw.merge(x, f"conv {node.target}'s kernel {tuple(conv.kernel_size)} does not fit the {lh}x{lw} low branch")
    if isinstance(x, Octave) and groups > 1 and not depthwise and x.partition.low_per_group(groups) is None:
        target = Partition.split(conv.in_channels, x.partition.alpha, groups)
        if target.low:
            x = rw.align(x, target, f"grouped conv {node.target} needs the same number of low channels in each of its {groups} groups")
        else:
            x = rw.merge(x, f"grouped conv {node.target} has groups too narrow to split")
    in_part = x.partition if isinstance(x, Octave) else Partition.all_high(conv.in_channels)
    if plan.alpha_out == 0.0:
        out_part = Partition.all_high(conv.out_channels)
    elif depthwise and isinstance(x, Octave):
        out_part = in_part  # a depthwise conv moves no channel between branches
    else:
        out_part = Partition.split(conv.out_channels, plan.alpha_out, groups if not depthwise and groups > 1 else plan.split_groups)
    if not isinstance(x, Octave) and not out_part.low:
        rw.conv_record(node, 0.0, 0.0, plan.reason or "alpha 0")
        return rw.copy(node, (x,), kwargs)
    layer = OctConv2d.from_conv(conv, octave=rw.octave, stride_mode=plan.stride_mode, in_partition=in_part, out_partition=out_part)
    if not rw.transfer_weights:
        layer.reset_parameters()
    name = _install(rw, node, layer)
    out = rw.call_pair_module(name, x, out_part)
    rw.conv_record(node, in_part.alpha, out_part.alpha, None)
    return out


@register_rule(nn.BatchNorm2d)
def batch_norm2d(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """BatchNorm2d -> OctBatchNorm2d, weights and running statistics split by the partition."""
    x = args[0]
    if not isinstance(x, Octave) or kwargs or len(args) != 1:
        raise Decline("it is called with more than one pair argument")
    layer = OctBatchNorm2d.from_bn(rw.original_module(node.target), x.partition)
    if not rw.transfer_weights:
        for bn in (layer.bn_h, layer.bn_l):
            if bn is not None:
                bn.reset_parameters()
    name = _install(rw, node, layer)
    rw.threaded(node)
    return rw.call_pair_module(name, x, x.partition)


# -- elementwise, dropout, local pooling: one op per branch -------------------------------------
_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU, nn.Mish, nn.LeakyReLU,
    nn.ELU, nn.CELU, nn.SELU, nn.Tanh, nn.Hardtanh, nn.Softplus,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
)
_ELEMENTWISE_FUNCTIONS = (
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid,
    F.sigmoid, F.gelu, F.mish, F.leaky_relu, F.elu, F.selu, F.celu, torch.tanh, F.tanh, F.hardtanh, F.softplus,
    torch.clamp, F.dropout, F.dropout2d,
)
_ELEMENTWISE_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_min_",
    "contiguous", "hardswish", "neg",
)
# Some torch functions are aliases of each other (F.relu_ is torch.relu_): register each once.
register_rule(*dict.fromkeys((*_ELEMENTWISE_MODULES, *_ELEMENTWISE_FUNCTIONS, *_ELEMENTWISE_METHODS)))(per_branch)
register_rule(nn.Identity)(passthrough)


# Positional parameter names of the pooling functions, to set ceil_mode on a call.
_POOL_PARAMS = {
    F.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    torch.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    F.avg_pool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
}


@register_rule(nn.MaxPool2d, nn.AvgPool2d, *_POOL_PARAMS)
def pool2d(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Max / average pooling per branch. The low grid is a ceil grid (ceil(H / octave)), so when
    floor-mode pooling takes the low branch off the grid of the pooled high branch, the low
    branch pools in ceil mode, which lands on it (135 -> 67 high, 68 -> 34 low)."""
    try:
        return rw.per_branch(node, args, kwargs)
    except Decline as first:
        x = args[0] if args else None
        if not isinstance(x, Octave) or "octave grid" not in str(first):
            raise
    if node.op == "call_module":
        m = rw.original_module(node.target)
        if isinstance(m, nn.MaxPool2d):
            if m.return_indices:
                raise Decline("it returns indices")
            fn, params = F.max_pool2d, dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation)
        else:
            fn, params = F.avg_pool2d, dict(
                kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                count_include_pad=m.count_include_pad, divisor_override=m.divisor_override,
            )
    else:
        fn = node.target
        params = dict(zip(_POOL_PARAMS[fn], args[1:]))
        params.update(kwargs)
        if params.get("return_indices"):
            raise Decline("it returns indices")
    params["ceil_mode"] = True
    h = rw.emit(node.op, node.target, (x.high, *args[1:]), kwargs)
    l = rw.emit("call_function", fn, (x.low,), params)
    why = rw.low_fits(h, l)
    if why is not None:
        rw.graph.erase_node(l)
        rw.graph.erase_node(h)
        raise Decline(why)
    rw.threaded(node)
    return Octave(h, l, x.partition)


def _stochastic_depth(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """torchvision StochasticDepth: one drop decision per sample shared by both branches."""
    x = args[0]
    m = rw.original_module(node.target)
    name = _install(rw, node, SharedStochasticDepth(m.p, m.mode))
    rw.threaded(node)
    return rw.call_pair_module(name, x, x.partition)


try:  # torchvision is a dependency, but the rule must not make octify's import depend on its ops
    from torchvision.ops import StochasticDepth

    register_rule(StochasticDepth)(_stochastic_depth)
except ImportError:  # pragma: no cover
    pass


# -- global pooling: a pair in, a plain (N, C, 1, 1) or (N, C) tensor out ------------------------
def _is_one(size: Any) -> bool:
    if isinstance(size, int):
        return size == 1
    return isinstance(size, (tuple, list)) and all(s == 1 for s in size)


@register_rule(nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.mean, "mean")
def global_pool(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Global pooling of each branch, then the channels back in the original order (exact)."""
    x = args[0]
    if not isinstance(x, Octave):
        raise Decline("the pair is not its first argument")
    rest_args, rest_kwargs = args[1:], dict(kwargs)
    if node.op == "call_module" or node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        if node.op == "call_module":
            size = rw.original_module(node.target).output_size
        else:
            size = rest_args[0] if rest_args else rest_kwargs.get("output_size")
        if not _is_one(size):
            return _adaptive_to_size(rw, node, x, size)
    else:
        dim = rest_args[0] if rest_args else rest_kwargs.get("dim")
        dims = {d % 4 for d in dim} if isinstance(dim, (tuple, list)) else None
        if dims != {2, 3}:
            raise Decline(f"it averages over {dim}, not over (H, W)")
    h = rw.emit(node.op, node.target, (x.high, *rest_args), rest_kwargs)
    l = rw.emit(node.op, node.target, (x.low, *rest_args), rest_kwargs)
    name = rw.add_module("pool_merge", ChannelMerge(x.partition))
    rw.threaded(node)
    return rw.emit("call_module", name, ((h, l),))


def _adaptive_to_size(rw: Rewriter, node: fx.Node, x: Octave, size: Any) -> Octave:
    """Adaptive pooling to S x S: the high branch to S, the low branch to its octave grid ceil(S / octave)."""
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    if any(s is None for s in sizes):
        raise Decline("it keeps an input dimension (output_size None)")
    low = tuple((s + rw.octave - 1) // rw.octave for s in sizes)
    mod = rw.original_module(node.target) if node.op == "call_module" else None
    fn = node.target if mod is None else (F.adaptive_avg_pool2d if isinstance(mod, nn.AdaptiveAvgPool2d) else F.adaptive_max_pool2d)
    if fn is F.adaptive_max_pool2d and mod is not None and mod.return_indices:
        raise Decline("it returns indices")
    h = rw.emit("call_function", fn, (x.high, sizes))
    l = rw.emit("call_function", fn, (x.low, low))
    rw.threaded(node)
    return Octave(h, l, x.partition)


# -- arithmetic ----------------------------------------------------------------------------------
_ARITH = (
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
)


def _branch_operand(rw: Rewriter, node: fx.Node, value: Any, part: Partition, high_hw: tuple) -> tuple[Any, Any]:
    """The (high, low) operands for ``value`` facing a pair of partition ``part``."""
    if isinstance(value, Octave):
        return value.high, value.low
    if not isinstance(value, fx.Node):
        return value, value  # a Python scalar
    val = value.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        return value, value
    if val.dim() == 4 and tuple(val.shape[-2:]) == (1, 1):
        if val.shape[1] == 1:
            return value, value  # broadcast over every channel
        if val.shape[1] == part.channels:
            pair = rw.split(value, part, "per-channel operand")  # squeeze-excitation scale, per-channel bias
            return pair.high, pair.low
    if val.dim() == 4 and val.shape[1] == part.channels and tuple(val.shape[-2:]) == tuple(high_hw):
        pair = rw.split(value, part, f"{describe(node, rw.orig_modules)} combines a pair with a plain map")
        return pair.high, pair.low
    raise Decline(f"it combines a pair with a plain tensor of shape {tuple(val.shape)}")


@register_rule(*_ARITH)
def arithmetic(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """add / sub / mul / div of a pair with a pair, a per-channel tensor, a plain map or a scalar."""
    if len(args) < 2:
        raise Decline("it has fewer than two operands")
    a, b, rest = args[0], args[1], args[2:]
    if any(isinstance(v, Octave) for v in (*rest, *kwargs.values())):
        raise Decline("a pair is passed beyond the two operands")
    if isinstance(a, Octave) and isinstance(b, Octave) and a.partition != b.partition:
        # Keep the partition with more low channels (the cheaper one downstream); ties keep a's.
        if len(b.partition.low) > len(a.partition.low):
            a = rw.align(a, b.partition, "operands of different partitions")
        else:
            b = rw.align(b, a.partition, "operands of different partitions")
    ref = a if isinstance(a, Octave) else b
    part = ref.partition
    high_hw = tuple(ref.high.meta["val"].shape[-2:])
    ah, al = _branch_operand(rw, node, a, part, high_hw)
    bh, bl = _branch_operand(rw, node, b, part, high_hw)
    try:
        h = rw.emit(node.op, node.target, (ah, bh, *rest), kwargs)
        l = rw.emit(node.op, node.target, (al, bl, *rest), kwargs)
    except Exception as e:  # a shape the op cannot broadcast
        raise Decline(str(e)) from None
    why = rw.low_fits(h, l)
    if why is not None:
        raise Decline(why)
    rw.threaded(node)
    return Octave(h, l, part)


# -- concatenation -------------------------------------------------------------------------------
@register_rule(torch.cat, torch.concat, torch.concatenate)
def cat(rw: Rewriter, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """torch.cat over channels: per-branch cat, the partitions composed; a plain part is all high."""
    tensors = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", kwargs.get("axis", 0))
    if not isinstance(tensors, (list, tuple)) or dim not in (1, -3):
        raise Decline(f"it concatenates over dim {dim}, not over channels")
    ref = next(t for t in tensors if isinstance(t, Octave))
    hw = tuple(ref.high.meta["val"].shape[-2:])
    highs, lows, part = [], [], Partition((), ())
    for t in tensors:
        if isinstance(t, Octave):
            if tuple(t.high.meta["val"].shape[-2:]) != hw:
                raise Decline("its pairs have different sizes")
            highs.append(t.high)
            lows.append(t.low)
            part = part.concat(t.partition)
        else:
            val = t.meta.get("val") if isinstance(t, fx.Node) else None
            if not isinstance(val, torch.Tensor) or val.dim() != 4 or tuple(val.shape[-2:]) != hw:
                raise Decline("it concatenates a pair with a tensor of another size")
            highs.append(t)
            part = part.concat(Partition.all_high(val.shape[1]))
    h = rw.emit("call_function", torch.cat, (highs, 1))
    l = lows[0] if len(lows) == 1 else rw.emit("call_function", torch.cat, (lows, 1))
    rw.threaded(node)
    return Octave(h, l, part)
