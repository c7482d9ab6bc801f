"""Stage 5, fuse: conv -> batch norm pairs of a converted graph, run as one conv in inference.

``fuse_conv_bn`` replaces each batch norm that alone consumes a conv's output with one
``conv_bn(x, conv, bn)`` node. Both modules stay where they are, under their names, with their
parameters: in training ``conv_bn`` is ``bn(conv(x))``; in eval mode outside autograd it runs the
conv once with the batch norm folded into cached weights (``nn._eval_cache``), which saves the
batch norm's pass over every feature map. The result is the same function either way.
"""

from __future__ import annotations

import operator
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.modules import module as _module

from ..nn import OctBatchNorm2d, OctConv2d, _eval_cache
from ..nn.octconv import fuse_low

__all__ = ["conv_bn", "fuse_conv_bn", "unfuse_conv_bn", "conv_bn_pairs", "conv_feeding", "bn_affine", "fold_affine"]

_Conv = Union[nn.Conv2d, OctConv2d]
_Norm = Union[nn.BatchNorm2d, OctBatchNorm2d]


def bn_affine(bn: nn.BatchNorm2d) -> Tuple[Tensor, Tensor]:
    """The per-channel (scale, shift) an eval-mode batch norm applies."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("folding a batch norm needs one that tracks running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def _branches(conv: _Conv, bn: _Norm) -> Optional[Tuple[Optional[nn.BatchNorm2d], Optional[nn.BatchNorm2d]]]:
    """The batch norms of conv's high and low outputs, or None when the pair cannot be folded."""
    if isinstance(conv, OctConv2d):
        if conv.depthwise:
            return None  # its outputs are reassembled from one low-resolution conv: no per-path rows to scale
        if isinstance(bn, OctBatchNorm2d):
            return (bn.bn_h, bn.bn_l) if bn.partition == conv.out_partition else None
        if conv.ol == 0:
            return bn, None
        return (None, bn) if conv.oh == 0 else None
    if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d:
        return bn, None
    return None


def fold_affine(
    weight: Optional[Tensor], bias: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor]
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """A conv's weight and bias with a per-output-channel ``y * scale + shift`` folded in (the
    one place BN folding is computed: ``conv_bn``'s cached weights and ``fold_bn`` both use it).
    A missing weight (an absent path) stays None; the weight keeps its memory format."""
    w = weight
    if weight is not None and scale is not None:
        fmt = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        w = (weight * scale.reshape(-1, 1, 1, 1)).contiguous(memory_format=fmt)
    b = bias
    if shift is not None:
        b = shift if bias is None else bias * scale + shift
    return w, b


def _folded(conv: _Conv, bh: Optional[nn.BatchNorm2d], bl: Optional[nn.BatchNorm2d]) -> List[Optional[Tensor]]:
    sh, th = bn_affine(bh) if bh is not None else (None, None)
    sl, tl = bn_affine(bl) if bl is not None else (None, None)
    if isinstance(conv, OctConv2d):
        w = conv.path_tensors()
        hh, b_h = fold_affine(w[0], w[5], sh, th)
        lh = fold_affine(w[1], None, sh, None)[0]
        hl, b_l = fold_affine(w[2], w[6], sl, tl)
        ll = fold_affine(w[3], None, sl, None)[0]
        out = [hh, lh, hl, ll, None, b_h, b_l]
        return fuse_low(out) if conv.fuses_low else out
    return list(fold_affine(conv.weight, conv.bias, sh, th))


def _hooked(*modules: Optional[nn.Module]) -> bool:
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m is not None and bool(m._forward_hooks or m._forward_pre_hooks) for m in modules)


def _sources(conv: _Conv, norms: Tuple[Optional[nn.BatchNorm2d], Optional[nn.BatchNorm2d]]) -> List[Optional[Tensor]]:
    out: List[Optional[Tensor]] = list(conv._parameters.values())
    for b in norms:
        if b is not None:
            out += [b.weight, b.bias, b.running_mean, b.running_var]
    return out


def conv_bn(x: Any, conv: _Conv, bn: _Norm) -> Any:
    """``bn(conv(x))``; in eval mode outside autograd, one conv with the batch norm folded in.

    Forward hooks on either module, or a batch norm without running statistics, keep the two
    calls separate so that hooks see what they expect."""
    if conv.training or bn.training:
        _eval_cache.drop(conv)
        return bn(conv(x))
    oct_bn = isinstance(bn, OctBatchNorm2d)
    if _hooked(conv, bn, bn.bn_h if oct_bn else None, bn.bn_l if oct_bn else None):
        return bn(conv(x))
    norms = _branches(conv, bn)
    if norms is None or any(b is not None and b.running_mean is None for b in norms):
        return bn(conv(x))
    key = ("bn", bn, tuple(None if b is None else b.eps for b in norms))
    inputs = [x] if isinstance(x, Tensor) else list(x)
    weights = _eval_cache.cached(conv, key, _sources(conv, norms), inputs, lambda: _folded(conv, norms[0], norms[1]))
    if weights is None:
        return bn(conv(x))
    if isinstance(conv, OctConv2d):
        return conv.forward_with(x, weights)
    return conv._conv_forward(x, weights[0], weights[1])


def conv_feeding(arg: Any, modules: dict) -> Optional[fx.Node]:
    """The conv node whose output is ``arg`` and nothing else uses (plain, or a (high, low) getitem pair)."""
    if isinstance(arg, fx.Node):
        ok = arg.op == "call_module" and isinstance(modules.get(arg.target), (nn.Conv2d, OctConv2d)) and len(arg.users) == 1
        return arg if ok else None
    if isinstance(arg, tuple) and len(arg) == 2 and all(isinstance(a, fx.Node) for a in arg):
        h, l = arg
        if not all(a.op == "call_function" and a.target is operator.getitem and len(a.users) == 1 for a in arg):
            return None
        src = h.args[0]
        if src is not l.args[0] or (h.args[1], l.args[1]) != (0, 1):
            return None
        ok = src.op == "call_module" and isinstance(modules.get(src.target), OctConv2d) and len(src.users) == 2
        return src if ok else None
    return None


def conv_bn_pairs(gm: fx.GraphModule, modules: dict) -> List[Tuple[fx.Node, fx.Node]]:
    """(batch norm node, conv node) for each BatchNorm2d / OctBatchNorm2d call that alone reads a
    Conv2d / OctConv2d call's output (a list, so that callers may edit the graph as they go)."""
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        if type(modules.get(node.target)) not in (nn.BatchNorm2d, OctBatchNorm2d):
            continue
        conv_node = conv_feeding(node.args[0], modules)
        if conv_node is not None:
            pairs.append((node, conv_node))
    return pairs


def fuse_conv_bn(gm: fx.GraphModule) -> List[Tuple[str, str]]:
    """Turn each conv -> batch norm pair that ``conv_bn`` can fold into one ``conv_bn`` node;
    returns the (conv, batch norm) names fused."""
    modules = dict(gm.named_modules())
    fused: List[Tuple[str, str]] = []
    for node, conv_node in conv_bn_pairs(gm, modules):
        if len(conv_node.args) != 1 or conv_node.kwargs:
            continue
        if _branches(modules[conv_node.target], modules[node.target]) is None:
            continue
        with gm.graph.inserting_before(node):
            conv_attr = gm.graph.get_attr(conv_node.target)
            bn_attr = gm.graph.get_attr(node.target)
            new = gm.graph.call_function(conv_bn, (conv_node.args[0], conv_attr, bn_attr))
        # Marked as torch.fx marks wrapped functions: the generated code then re-traces it as
        # one call (GraphModule pickling traces that code again on load).
        new.meta["is_wrapped"] = True
        new.meta.update({k: v for k, v in node.meta.items() if k in ("val", "nn_module_stack")})
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        for user in list(conv_node.users):
            gm.graph.erase_node(user)  # the getitems that fed the batch norm
        gm.graph.erase_node(conv_node)
        fused.append((conv_node.target, node.target))
    gm.recompile()
    return fused


def unfuse_conv_bn(gm: fx.GraphModule) -> None:
    """Undo ``fuse_conv_bn``: each ``conv_bn`` node back into a conv call and a batch norm call."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not conv_bn:
            continue
        x, conv_attr, bn_attr = node.args
        with gm.graph.inserting_before(node):
            y = gm.graph.call_module(conv_attr.target, (x,))
            conv = gm.get_submodule(conv_attr.target)
            if isinstance(conv, OctConv2d) and conv.oh and conv.ol:
                y = (gm.graph.call_function(operator.getitem, (y, 0)), gm.graph.call_function(operator.getitem, (y, 1)))
            out = gm.graph.call_module(bn_attr.target, (y,))
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        for attr in (conv_attr, bn_attr):
            if not attr.users:
                gm.graph.erase_node(attr)
        changed = True
    if changed:
        gm.recompile()

