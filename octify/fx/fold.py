"""fold_bn (after the pass, on request; part of ``octify.freeze``): fold inference-mode batch
norms into the convs in front of them (plain and octave), for good: the folded model has new
conv weights and no batch norms."""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Tuple

import torch
import torch.fx as fx
from torch import Tensor, nn

from ..nn.batchnorm import OctBatchNormNd
from ..nn.octconv import OctConvNd
from ..utils.validate import check_module
from .fuse import unfuse_conv_bn
from .ops import BATCH_NORMS, CONVS, is_branch_read, is_single
from .tracer import trace

__all__ = ["fold_bn", "fold_graph", "as_graph_module", "bn_affine", "fold_affine", "conv_bn_pairs", "conv_feeding"]


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


def fold_affine(
    weight: Optional[Tensor], bias: Optional[Tensor], scale: Optional[Tensor], shift: Optional[Tensor]
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """A conv's weight and bias with a per-output-channel ``y * scale + shift`` folded in (the
    one place BN folding is computed: ``conv_bn``'s cached weights and ``fold_bn`` both use it).
    A missing weight (an absent path) stays None; the weight keeps its memory format."""
    w = weight
    if weight is not None and scale is not None:
        four_d = weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if four_d else torch.contiguous_format
        w = (weight * scale.reshape(-1, *[1] * (weight.dim() - 1))).contiguous(memory_format=fmt)
    b = bias
    if shift is not None:
        b = shift if bias is None else bias * scale + shift
    return w, b


def conv_feeding(arg: Any, modules: dict) -> Optional[fx.Node]:
    """The conv node whose output is ``arg`` and nothing else uses (plain, or a (high, low) getitem pair)."""
    if isinstance(arg, fx.Node) and is_single(arg) and len(arg.users) == 1:
        arg = arg.args[0]  # a one-branch octave output, narrowed for TorchScript
    if isinstance(arg, fx.Node):
        ok = arg.op == "call_module" and isinstance(modules.get(arg.target), (*CONVS, OctConvNd)) and len(arg.users) == 1
        return arg if ok else None
    if isinstance(arg, tuple) and len(arg) == 2 and all(isinstance(a, fx.Node) for a in arg):
        h, l = arg
        if not all(is_branch_read(a) and len(a.users) == 1 for a in arg):
            return None
        src = h.args[0]
        if src is not l.args[0] or (h.args[1], l.args[1]) != (0, 1):
            return None
        ok = src.op == "call_module" and isinstance(modules.get(src.target), OctConvNd) and len(src.users) == 2
        return src if ok else None
    return None


def conv_bn_pairs(gm: fx.GraphModule, modules: dict) -> List[Tuple[fx.Node, fx.Node]]:
    """(batch norm node, conv node) for each BatchNorm2d / OctBatchNorm2d call that alone reads a
    Conv2d / OctConv2d call's output (a list, so that callers may edit the graph as they go)."""
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        if type(modules.get(node.target)) not in (*BATCH_NORMS, *BATCH_NORMS.values()):
            continue
        conv_node = conv_feeding(node.args[0], modules)
        if conv_node is not None:
            pairs.append((node, conv_node))
    return pairs




def _oct_bn_affine(bn: OctBatchNormNd) -> Tuple[Tensor, Tensor]:
    part = bn.partition
    ref = next(iter(bn.buffers()))
    scale = torch.empty(part.channels, dtype=ref.dtype, device=ref.device)
    shift = torch.empty_like(scale)
    for sub, idx in ((bn.bn_h, part.high), (bn.bn_l, part.low)):
        if sub is not None:
            s, t = bn_affine(sub)
            scale[list(idx)], shift[list(idx)] = s, t
    return scale, shift


@torch.no_grad()
def _folded_dense(weight: Tensor, bias: Optional[Tensor], scale: Tensor, shift: Tensor) -> Tuple[Tensor, Tensor]:
    w, b = fold_affine(weight, bias, scale, shift)
    assert w is not None and b is not None  # a weight and a shift were given
    return w, b


def _fold_plain(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale, shift = bn_affine(bn)
    w, b = _folded_dense(conv.weight, conv.bias, scale, shift)
    out = copy.deepcopy(conv)
    out.weight = nn.Parameter(w)
    out.bias = nn.Parameter(b)
    return out


def _fold_octave(conv: OctConvNd, scale: Tensor, shift: Tensor) -> OctConvNd:
    weight, bias = conv.to_dense_weight()
    w, b = _folded_dense(weight, bias, scale, shift)
    dense = conv._CONV(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        True, conv.padding_mode, device=w.device, dtype=w.dtype,
    )
    dense.weight = nn.Parameter(w)
    dense.bias = nn.Parameter(b)
    return type(conv)._from_conv(
        dense, 0.0, conv.octave, conv.stride_mode, conv.in_partition, conv.out_partition, conv._axes  # alpha: the partitions
    ).eval()


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    *path, leaf = name.split(".")
    parent = root.get_submodule(".".join(path)) if path else root
    setattr(parent, leaf, module)


def fold_bn(model: nn.Module, *, inplace: bool = False) -> fx.GraphModule:
    """Fold each eval-mode BatchNorm2d / OctBatchNorm2d into the Conv2d / OctConv2d that alone feeds it.

    Works on a converted model and on a plain one (traced with torch.fx first), so that a
    benchmark can apply the same trick to both sides. Inference only: the model must be in eval mode.

    >>> import torch, torchvision, octify
    >>> net = torchvision.models.resnet18().eval()
    >>> folded = octify.fold_bn(octify.convert(net, octave=1))
    >>> x = torch.randn(1, 3, 64, 64)
    >>> bool((folded(x) - net(x)).abs().max() < 1e-3)
    True
    >>> any(isinstance(m, (torch.nn.BatchNorm2d, octify.OctBatchNorm2d)) for m in folded.modules())
    False
    """
    check_module(model, "octify.fold_bn: model")
    if any(m.training for m in model.modules() if isinstance(m, (*BATCH_NORMS, OctBatchNormNd))):
        raise ValueError("fold_bn folds running statistics into the convs: call model.eval() first")
    gm = as_graph_module(model, inplace)
    fold_graph(gm)
    return gm


def as_graph_module(model: nn.Module, inplace: bool) -> fx.GraphModule:
    """``model`` (or a copy, unless ``inplace``) as a GraphModule: traced with torch.fx when it is not one."""
    if isinstance(model, fx.GraphModule):
        return model if inplace else copy.deepcopy(model)
    return trace(model if inplace else copy.deepcopy(model), (), ())


def fold_graph(gm: fx.GraphModule) -> List[Tuple[str, str]]:
    """Fold, in ``gm`` itself, each eval-mode batch norm that alone reads a conv's output; returns
    the (conv, batch norm) names folded."""
    unfuse_conv_bn(gm)  # a model saved by 0.1.0 runs its conv -> BN pairs through conv_bn
    modules = dict(gm.named_modules())
    folded: List[Tuple[str, str]] = []
    for node, conv_node in conv_bn_pairs(gm, modules):
        bn, conv = modules[node.target], modules[conv_node.target]
        if isinstance(bn, OctBatchNormNd) and isinstance(conv, OctConvNd):
            if bn.partition != conv.out_partition:
                continue
            _set(gm, conv_node.target, _fold_octave(conv, *_oct_bn_affine(bn)))
            for user in list(node.users):
                if is_branch_read(user):
                    user.replace_all_uses_with(node.args[0][user.args[1]])
                    gm.graph.erase_node(user)
            if node.users:
                node.replace_all_uses_with(conv_node)
        elif type(bn) in BATCH_NORMS and type(conv) in CONVS:
            _set(gm, conv_node.target, _fold_plain(conv, bn))
            node.replace_all_uses_with(node.args[0])
        elif type(bn) in BATCH_NORMS and isinstance(conv, OctConvNd) and not conv.out_partition.low:
            _set(gm, conv_node.target, _fold_octave(conv, *bn_affine(bn)))  # alpha_out 0: a plain output
            node.replace_all_uses_with(node.args[0])
        else:
            continue
        gm.graph.erase_node(node)
        folded.append((conv_node.target, node.target))
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return folded
