"""What models saved by octify 0.1.0 call: ``conv_bn``, the conv -> batch norm pair as one call.

Version 0.1.0 ran each conv -> batch norm pair of a converted graph through ``conv_bn``, which in
inference used weights with the norm folded in, cached behind the parameters' version counters.
Converted models are now plain (conv, then batch norm) and ``octify.freeze`` folds for good; files
saved before still call ``conv_bn`` by this path, so it stays, computing ``bn(conv(x))``, and
``unfuse_conv_bn`` turns such a graph back into the two calls.
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from ..nn import OctConv2d
from ..nn.functional import branch

__all__ = ["conv_bn", "unfuse_conv_bn"]


def conv_bn(x: Any, conv: nn.Module, bn: nn.Module) -> Any:
    """``bn(conv(x))``."""
    return bn(conv(x))


def unfuse_conv_bn(gm: fx.GraphModule) -> None:
    """Each ``conv_bn`` node back into a conv call and a batch norm call."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not conv_bn:
            continue
        x, conv_attr, bn_attr = node.args
        with gm.graph.inserting_before(node):
            y = gm.graph.call_module(conv_attr.target, (x,))
            conv = gm.get_submodule(conv_attr.target)
            if isinstance(conv, OctConv2d) and conv.oh and conv.ol:
                y = (gm.graph.call_function(branch, (y, 0)), gm.graph.call_function(branch, (y, 1)))
            out = gm.graph.call_module(bn_attr.target, (y,))
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        for attr in (conv_attr, bn_attr):
            if not attr.users:
                gm.graph.erase_node(attr)
        changed = True
    if changed:
        gm.recompile()

