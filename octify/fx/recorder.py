"""Record keeping for one conversion: what became of each conv, every merge, split and align,
and how many nodes of each op kind ran per branch. Fills a :class:`~octify.record.ConversionRecord`."""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch.fx as fx
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

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

    def unconverted_convs(self, model: nn.Module, gm: fx.GraphModule, is_leaf: Callable[[nn.Module, str], bool]) -> None:
        """Every conv of ``model`` that the rewrite did not see, recorded plain with the reason:
        inside a user leaf module, a Conv2d subclass traced through (its forward is its own), a
        conv of another kind (Conv1d, Conv3d, transposed), or one the forward never calls. A conv
        never goes missing from the record."""
        seen = {c.name for c in self.record.convs}
        leaves = [
            n.target for n in gm.graph.nodes
            if n.op == "call_module" and is_leaf(gm.get_submodule(n.target), str(n.target))
        ]
        for name, m in model.named_modules():
            if not isinstance(m, _ConvNd) or name in seen:
                continue
            leaf = next((lf for lf in leaves if name.startswith(f"{lf}.")), None)
            if leaf is not None:
                reason = f"inside leaf module {leaf}"
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and type(m) not in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
                base = next(t for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d) if isinstance(m, t)).__name__
                reason = f"{type(m).__name__} is a {base} subclass with a forward of its own: kept whole, left plain"
            elif isinstance(m, _ConvTransposeNd):
                reason = f"{type(m).__name__}: transposed convs have no octave rule yet"
            else:
                reason = "not called by the traced forward"
            self.record.convs.append(ConvRecord(name, 0.0, 0.0, (), (), reason))
