"""Stage 1, trace: a leaf-module-aware torch.fx tracer.

octify's own layers, the user's leaf modules (types or qualified-name globs) and module types
that have an octave rule are traced whole, as one ``call_module`` node each.
"""

from __future__ import annotations

import fnmatch
from typing import Sequence, Union

import torch.fx as fx
from torch import nn

from ..errors import ConversionError

__all__ = ["LeafSpec", "Tracer", "is_user_leaf", "split_leaf_specs", "trace"]

LeafSpec = Union[type, str]


class Tracer(fx.Tracer):
    """torch.fx's tracer plus user leaf modules (types or qualified-name globs) and rule-keyed types."""

    def __init__(self, leaf_types: tuple[type, ...], leaf_globs: tuple[str, ...]) -> None:
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_globs = leaf_globs

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # octify's own layers branch on their input's type: trace them whole.
        if type(m).__module__.startswith("octify.nn."):
            return True
        if is_user_leaf(m, qualname, self._leaf_types, self._leaf_globs):
            return True
        return super().is_leaf_module(m, qualname)


def is_user_leaf(m: nn.Module, qualname: str, leaf_types: tuple[type, ...], leaf_globs: tuple[str, ...]) -> bool:
    """Whether the user asked for ``m`` (at ``qualname``) to be kept whole."""
    return isinstance(m, leaf_types) or any(fnmatch.fnmatchcase(qualname, g) for g in leaf_globs)


def split_leaf_specs(leaf_modules: Sequence[LeafSpec]) -> tuple[tuple[type, ...], tuple[str, ...]]:
    types, globs = [], []
    for spec in leaf_modules:
        if isinstance(spec, type) and issubclass(spec, nn.Module):
            types.append(spec)
        elif isinstance(spec, str):
            globs.append(spec)
        else:
            raise TypeError(
                f"leaf_modules entries must be nn.Module subclasses or qualified-name globs, found {spec!r}"
            )
    return tuple(types), tuple(globs)


def trace(model: nn.Module, leaf_types: tuple[type, ...], leaf_globs: tuple[str, ...]) -> fx.GraphModule:
    tracer = Tracer(leaf_types, leaf_globs)
    try:
        graph = tracer.trace(model)
    except Exception as e:  # torch.fx raises many kinds; each becomes one clear message
        stack = list(getattr(tracer, "module_stack", {}).values())
        where = ""
        if stack:
            path, mtype = stack[-1] if isinstance(stack[-1], tuple) else (stack[-1], "")
            type_name = getattr(mtype, "__name__", str(mtype).rsplit(".", 1)[-1].rstrip("'>"))
            where = f" in module '{path}' ({type_name})" if path else ""
        culprit = f"'{stack[-1][0]}'" if stack and isinstance(stack[-1], tuple) and stack[-1][0] else "that module's type"
        raise ConversionError(
            f"torch.fx cannot trace {type(model).__name__}{where}: {type(e).__name__}: {e}. "
            f"Hint: pass leaf_modules=[{culprit}] (a qualified name glob or a module type) to keep it intact; "
            "its convs then stay plain."
        ) from e
    return fx.GraphModule(model, graph, class_name=type(model).__name__)
