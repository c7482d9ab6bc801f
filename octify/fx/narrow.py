"""Union outputs narrowed: each octave module whose output is used as one Tensor gets a ``single`` call.

Octave modules are typed to return a Tensor or a (high, low) pair (``OctaveOutput``), since
which one depends on the layer's alphas. Python does not care; TorchScript does: it will not
index the Union or pass it where a Tensor is expected. Pair outputs are already read through
``branch``; this stage puts ``single`` after the others, so that ``torch.jit.script`` compiles
the converted (and the frozen) model. Run last, after every stage that edits the graph.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, Union

import torch.fx as fx

from ..nn.functional import single
from .ops import is_branch_read, is_single

__all__ = ["narrow_outputs", "returns_union"]


@functools.lru_cache(maxsize=None)
def returns_union(cls: type) -> bool:
    """Whether ``cls.forward`` is annotated to return a Union (octify's modules only)."""
    if not cls.__module__.startswith("octify."):
        return False
    try:
        hint: Any = typing.get_type_hints(cls.forward).get("return")
    except Exception:  # an annotation that does not resolve: not one of octify's Union types
        return False
    return typing.get_origin(hint) is Union


def narrow_outputs(gm: fx.GraphModule) -> int:
    """Insert ``single`` after every Union-typed module call whose value is used whole; returns how many."""
    modules = dict(gm.named_modules())
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not returns_union(type(modules.get(node.target))):
            continue
        if isinstance(node.meta.get("val"), tuple) or not node.users:
            continue
        if all(is_branch_read(u) or is_single(u) for u in node.users):
            continue
        with gm.graph.inserting_after(node):
            out = gm.graph.call_function(single, (node,))
        out.meta.update({k: v for k, v in node.meta.items() if k in ("val", "nn_module_stack")})
        out.meta["is_wrapped"] = True  # one call when the generated code is traced again
        node.replace_all_uses_with(out, delete_user_cb=lambda u: u is not out)
        done += 1
    if done:
        gm.recompile()
    return done
