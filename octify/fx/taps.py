"""Where the original's modules end in the converted graph: the values feature distillation reads.

The traced graph knows, for every node, the modules it ran inside (``nn_module_stack``); the
rewrite knows which node (or ``(high, low)`` pair of nodes) of the new graph holds each traced
node's value. Joined, they say where each module's output lives in the converted model -- what
``octify.finetune(features=...)`` compares with the original's module output (a forward hook
there). The *stages* are the ends of the resolutions where octave layers run: the last module
output at one map size, named by the outermost module that ends there (``layer1`` ... ``layer4``
of a ResNet), the points where a CNN's stage hands its maps on.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.fx as fx

from ..rules import Octave

__all__ = ["module_taps"]


def _module_ends(gm: fx.GraphModule) -> dict[str, fx.Node]:
    """{module path: the last traced node run inside it}: its output, for modules that return one tensor."""
    ends: dict[str, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        paths = [entry[0] for entry in (node.meta.get("nn_module_stack") or {}).values() if isinstance(entry, tuple)]
        if node.op == "call_module":
            paths.append(str(node.target))
        for path in paths:
            if path:
                ends[path] = node
    return ends


def _describe(value: Any, val: torch.Tensor) -> dict:
    if isinstance(value, Octave):
        return {"high": value.high.name, "low": value.low.name, "low_channels": list(value.partition.low),
                "channels": value.partition.channels, "shape": list(val.shape)}
    return {"high": value.name, "low": None, "low_channels": [], "channels": int(val.shape[1]) if val.dim() > 1 else 0,
            "shape": list(val.shape)}


def module_taps(gm: fx.GraphModule, values: Mapping[fx.Node, Any]) -> dict[str, dict]:
    """{module path: where its output is in the converted graph} for every module of the traced
    ``gm`` that ends in one tensor, ``values`` mapping traced nodes to the rewrite's values.

    Each entry names the new graph's node(s) (``high``, and ``low`` for a pair, whose channels in
    the original order are ``low_channels``), the plain shape, and ``stage``: True for the stage
    ends that ``features="auto"`` distils."""
    ends = _module_ends(gm)
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    by_node: dict[fx.Node, list[str]] = {}
    for path, node in ends.items():
        by_node.setdefault(node, []).append(path)
    taps: dict[str, dict] = {}
    last_at: dict[tuple, fx.Node] = {}  # map size -> the last module end at it
    octave_at: set[tuple] = set()  # the map sizes where pairs run
    for node in sorted(by_node, key=order.__getitem__):
        val, value = node.meta.get("val"), values.get(node)
        if not isinstance(val, torch.Tensor) or not isinstance(value, (fx.Node, Octave)):
            continue
        for path in by_node[node]:
            taps[path] = {**_describe(value, val), "stage": False}
        if val.dim() >= 3:
            last_at[tuple(val.shape[2:])] = node
            if isinstance(value, Octave) and value.partition.low:
                octave_at.add(tuple(val.shape[2:]))
    for node in (last_at[size] for size in octave_at):
        outermost = min(by_node[node], key=lambda p: (p.count("."), p))
        taps[outermost]["stage"] = True
    return dict(sorted(taps.items(), key=lambda kv: order[ends[kv[0]]]))
