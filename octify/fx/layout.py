"""Stage 6, memory format: the converted model's 4-D weights laid out channels-last, and the ops
that read memory layout given the layout the original gave them.

Its many small convolutions run fastest channels-last on a CPU (benchmarks/latency.py); inputs
in either layout are accepted. Only 4-D tensors have that layout: the weights of Conv1d / Conv3d
layers and every other tensor stay as they are.

A channels-last weight makes the conv's output channels-last too, and that layout flows on. Most
ops do not care; a few read the memory layout itself (``ops.LAYOUT_READING_METHODS``): the
hand-written flatten ``x.view(x.size(0), -1)`` fails on a channels-last map that a contiguous one
takes, ``as_strided`` reads other values. The user's code is right for every contiguous input, so
each such op's 4-D input is made contiguous first (``.contiguous()``: a no-op when it already is,
else a copy of the one map it reads -- at a classifier's head, a few KiB) and the record says where.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.fx as fx
from torch import nn

from ..record import ConversionRecord, MergeRecord
from .ops import LAYOUT_READING_FUNCTIONS, LAYOUT_READING_METHODS

__all__ = ["to_channels_last", "contiguous_before_layout_reads"]


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with every 4-D parameter and buffer channels-last (in place, as ``Module.to``)."""
    return model._apply(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)


def _reads_layout(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in LAYOUT_READING_METHODS
    if node.op == "call_function":
        # A custom op (torch.ops.*) may read strides: it gets the layout the original gave it.
        return node.target in LAYOUT_READING_FUNCTIONS or isinstance(node.target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket))
    return False


def contiguous_before_layout_reads(gm: fx.GraphModule, record: Optional[ConversionRecord] = None) -> int:
    """Make the 4-D tensor inputs of every layout-reading op contiguous (the tensor a method reads;
    every tensor a custom op takes); returns how many. A node whose value is unknown (a graph
    traced without example inputs: ``freeze`` of a plain model) is treated as 4-D where it is the
    tensor a method reads -- ``.contiguous()`` of a contiguous tensor costs nothing."""
    done = 0
    for node in list(gm.graph.nodes):
        if not _reads_layout(node):
            continue
        read = node.all_input_nodes if node.op == "call_function" else node.all_input_nodes[:1]
        for x in read:
            val = x.meta.get("val")
            unknown = val is None and node.op == "call_method"
            if not (unknown or (isinstance(val, torch.Tensor) and val.dim() == 4)) or (x.op == "call_method" and x.target == "contiguous"):
                continue
            with gm.graph.inserting_before(node):
                c = gm.graph.call_method("contiguous", (x,))
            if val is not None:
                c.meta["val"] = val
            node.replace_input_with(x, c)
            what = f".{node.target}()" if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
            if record is not None:
                record.merges.append(MergeRecord(
                    "layout", node.name, what,
                    f"{what} reads the memory layout: its input is made contiguous first, as the original had it "
                    "(a no-op when it already is)",
                ))
            done += 1
    if done:
        gm.recompile()
    return done
