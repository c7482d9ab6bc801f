"""fold_bn (after the pass, on request): fold inference-mode batch norms into the convs in front of them (plain and octave)."""

from __future__ import annotations

import copy
import operator
from typing import Optional, Tuple

import torch
import torch.fx as fx
from torch import Tensor, nn

from ..nn import OctBatchNorm2d, OctConv2d
from .fuse import bn_affine, conv_bn_pairs, fold_affine, unfuse_conv_bn
from ..utils.validate import check_module
from .tracer import trace

__all__ = ["fold_bn"]


def _oct_bn_affine(bn: OctBatchNorm2d) -> Tuple[Tensor, Tensor]:
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


def _fold_octave(conv: OctConv2d, scale: Tensor, shift: Tensor) -> OctConv2d:
    weight, bias = conv.to_dense_weight()
    w, b = _folded_dense(weight, bias, scale, shift)
    dense = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
        True, conv.padding_mode, device=w.device, dtype=w.dtype,
    )
    dense.weight = nn.Parameter(w)
    dense.bias = nn.Parameter(b)
    return OctConv2d.from_conv(
        dense, octave=conv.octave, stride_mode=conv.stride_mode, in_partition=conv.in_partition, out_partition=conv.out_partition
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
    if any(m.training for m in model.modules() if isinstance(m, (nn.BatchNorm2d, OctBatchNorm2d))):
        raise ValueError("fold_bn folds running statistics into the convs: call model.eval() first")
    if isinstance(model, fx.GraphModule):
        gm = model if inplace else copy.deepcopy(model)
    else:
        gm = trace(model if inplace else copy.deepcopy(model), (), ())
    unfuse_conv_bn(gm)  # a converted model runs its conv -> BN pairs through conv_bn: fold them for good
    modules = dict(gm.named_modules())

    for node, conv_node in conv_bn_pairs(gm, modules):
        bn, conv = modules[node.target], modules[conv_node.target]
        if isinstance(bn, OctBatchNorm2d) and isinstance(conv, OctConv2d):
            if bn.partition != conv.out_partition:
                continue
            _set(gm, conv_node.target, _fold_octave(conv, *_oct_bn_affine(bn)))
            for user in list(node.users):
                if user.op == "call_function" and user.target is operator.getitem:
                    user.replace_all_uses_with(node.args[0][user.args[1]])
                    gm.graph.erase_node(user)
            if node.users:
                node.replace_all_uses_with(conv_node)
        elif type(bn) is nn.BatchNorm2d and type(conv) is nn.Conv2d:
            _set(gm, conv_node.target, _fold_plain(conv, bn))
            node.replace_all_uses_with(conv_node)
        elif type(bn) is nn.BatchNorm2d and isinstance(conv, OctConv2d) and not conv.out_partition.low:
            _set(gm, conv_node.target, _fold_octave(conv, *bn_affine(bn)))  # alpha_out 0: a plain output
            node.replace_all_uses_with(conv_node)
        else:
            continue
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
