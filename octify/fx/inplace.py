"""Stage 5, in-place sums: residual additions written in place, as the original's ``out += identity`` was.

torch.fx records ``out += identity`` as ``operator.add``, so a traced network allocates a new
map for every residual sum where the original wrote into ``out``. For each ``a + b`` whose ``a``
is a fresh output of a conv or a batch norm that nothing else reads, the graph is given the
in-place form back. Autograd allows it: neither op keeps its output for the backward pass.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
import torch.fx as fx

from ..errors import ConversionError
from .ops import FRESH_OUTPUT_MODULES, is_branch_read, is_single
from .shape_prop import fake_mode, fakeify, propagate

__all__ = ["inplace_adds", "plain_sums_in_place"]


def _fresh(node: fx.Node, modules: dict) -> bool:
    """Whether ``node``'s value is a new tensor no other node can see."""
    if is_single(node):
        src = node.args[0]
        return isinstance(src, fx.Node) and len(src.users) == 1 and _fresh(src, modules)
    if is_branch_read(node):
        src = node.args[0]
        return isinstance(src, fx.Node) and _fresh(src, modules) and all(is_branch_read(u) for u in src.users)
    return node.op == "call_module" and type(modules.get(node.target)) in FRESH_OUTPUT_MODULES


def inplace_adds(gm: fx.GraphModule) -> int:
    """Turn ``a + b`` into ``a += b`` where that cannot be observed; returns how many."""
    modules = dict(gm.named_modules())
    done = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not operator.add or len(node.args) != 2 or node.kwargs:
            continue
        for i in (0, 1):
            a, b = node.args[i], node.args[1 - i]
            if not isinstance(a, fx.Node) or len(a.users) != 1 or not _fresh(a, modules):
                continue
            va, out = a.meta.get("val"), node.meta.get("val")
            if not isinstance(va, torch.Tensor) or not isinstance(out, torch.Tensor):
                continue
            if va.shape != out.shape or va.dtype != out.dtype:
                continue  # b broadcasts a, or promotes its dtype: the sum needs its own tensor
            node.target = operator.iadd
            node.args = (a, b)
            done += 1
            break
    gm.recompile()
    return done


def plain_sums_in_place(gm: fx.GraphModule, inputs: tuple) -> Optional[int]:
    """``inplace_adds`` for a plain model ``octify.freeze`` traced itself (a converted one had it
    in stage 5), after the shapes are found on ``inputs``: how many sums, or None where the model
    does not run on them (its sums then stay out of place; nothing else depends on it).

    ``octify.freeze`` of the original is the baseline every speed figure is measured against, so
    it gets what the converted model gets: without it the plain side allocated a new map for each
    residual sum (resnet50 at batch 8: 3-5% of its time)."""
    fm = fake_mode()
    try:
        propagate(gm, fm, tuple(fakeify(fm, v) for v in inputs))
        return inplace_adds(gm)
    except ConversionError:
        return None
    finally:
        for node in gm.graph.nodes:  # fake values are for this decision only: the frozen model keeps no meta of them
            node.meta.pop("val", None)
