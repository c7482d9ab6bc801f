"""Inference-time weights derived from a module's parameters, computed once and reused.

Eval-mode layers rebuild the same derived weights on every call (the concatenated H->L / L->L
weight of an OctConv2d; conv weights with a batch norm folded in). Here they are kept per module
and recomputed only when a source tensor is replaced (``.data =``, ``.to()``, a new Parameter) or
changed in place (its version counter moves: an optimizer step, ``load_state_dict``).
"""

import weakref
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

_Stamp = List[Tuple[Optional[Tensor], int, int]]
_CACHE: "weakref.WeakKeyDictionary[nn.Module, Tuple[Any, _Stamp, List[Optional[Tensor]]]]" = weakref.WeakKeyDictionary()
_PLAIN = (Tensor, nn.Parameter)


def _fresh(stamp: _Stamp, sources: Sequence[Optional[Tensor]]) -> bool:
    if len(stamp) != len(sources):
        return False
    for (t0, v0, p0), t in zip(stamp, sources):
        if t0 is not t:
            return False
        if t is not None and (t._version != v0 or t.data_ptr() != p0):
            return False
    return True


def cached(
    owner: nn.Module,
    key: Any,
    sources: Sequence[Optional[Tensor]],
    inputs: Sequence[Optional[Tensor]],
    make: Callable[[], List[Optional[Tensor]]],
) -> Optional[List[Optional[Tensor]]]:
    """``make()``'s result for ``owner``, recomputed when ``key`` or a source changed; None where
    cached weights must not be used: training mode, under torch.compile (which traces the live
    computation and optimises it itself), fake or other subclass tensors, or autograd into a source."""
    if owner.training or torch.compiler.is_compiling():
        return None
    for t in inputs:
        if t is not None and type(t) is not Tensor:
            return None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in sources):
        return None
    entry = _CACHE.get(owner)
    if entry is not None and entry[0] == key and _fresh(entry[1], sources):
        return entry[2]
    for t in sources:
        if t is not None and (type(t) not in _PLAIN or t.is_inference()):
            return None  # inference tensors have no version counter to watch
    with torch.no_grad():
        value = make()
    _CACHE[owner] = (key, [(t, -1 if t is None else t._version, -1 if t is None else t.data_ptr()) for t in sources], value)
    return value


def drop(owner: nn.Module) -> None:
    """Forget ``owner``'s cached weights (back in training they would only hold memory)."""
    _CACHE.pop(owner, None)
