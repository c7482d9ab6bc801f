"""Record keeping for one conversion: what became of each conv, every merge, split and align,
and how many nodes of each op kind ran per branch. Fills a :class:`~octify.record.ConversionRecord`."""

from __future__ import annotations

from typing import Mapping, Optional

import torch.fx as fx
from torch import nn

from ..record import ConversionRecord, ConvRecord, MergeRecord
from .ops import describe

__all__ = ["Recorder"]


class Recorder:
    """Appends to ``record``; ``node`` is the original node being rewritten (what a merge is "before")."""

    def __init__(self, record: ConversionRecord, modules: Mapping[str, nn.Module]) -> None:
        self.record = record
        self._modules = modules
        self.node: Optional[fx.Node] = None

    def describe(self, node: fx.Node) -> str:
        return describe(node, self._modules)

    def plumbing(self, kind: str, reason: str) -> None:
        """A merge, split or align inserted in front of the current node."""
        node = self.node
        target = self.describe(node) if node is not None else "?"
        self.record.merges.append(MergeRecord(kind, node.name if node is not None else "?", target, reason))

    def threaded(self, node: fx.Node) -> None:
        kind = self.describe(node)
        self.record.threaded[kind] = self.record.threaded.get(kind, 0) + 1

    def conv(self, node: fx.Node, alpha_in: float, alpha_out: float, plain_reason: Optional[str]) -> None:
        src = node.args[0]
        in_shape = tuple(src.meta["val"].shape) if isinstance(src, fx.Node) else ()
        self.record.convs.append(
            ConvRecord(str(node.target), alpha_in, alpha_out, in_shape, tuple(node.meta["val"].shape), plain_reason)
        )

    def leaf_convs(self, gm: fx.GraphModule, is_leaf) -> None:
        """Convs inside user leaf modules: kept whole, so plain, with that reason."""
        for node in gm.graph.nodes:
            if node.op != "call_module":
                continue
            mod = gm.get_submodule(node.target)
            if isinstance(mod, nn.Conv2d) or not is_leaf(mod, node.target):
                continue
            for sub, m in mod.named_modules():
                if isinstance(m, nn.Conv2d) and sub:
                    self.record.convs.append(
                        ConvRecord(f"{node.target}.{sub}", 0.0, 0.0, (), (), f"inside leaf module {node.target}")
                    )
