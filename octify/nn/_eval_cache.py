"""Inference-time weights derived from a module's parameters, computed once and reused.

Eval-mode layers rebuild the same derived weights on every call (the concatenated H->L / L->L
weight of an OctConv2d; conv weights with a batch norm folded in). Here they are kept per module
and recomputed only when a source tensor is replaced or changed in place (its version counter
moves: an optimizer step, ``load_state_dict``, ``.to()``).
"""

import weakref
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

_Entry = Tuple[Any, List[Tuple[Tensor, int, int]], List[Optional[Tensor]]]
_CACHE: "weakref.WeakKeyDictionary[nn.Module, _Entry]" = weakref.WeakKeyDictionary()
_PLAIN = (Tensor, nn.Parameter)


def applies(owner: nn.Module, inputs: Sequence[Optional[Tensor]], sources: Sequence[Optional[Tensor]]) -> bool:
    """Whether ``owner`` may run on cached weights: eval mode, real tensors, no autograd into the
    sources, not under torch.compile (which traces the live computation and optimises it itself)."""
    if owner.training or torch.compiler.is_compiling():
        return False
    for t in inputs:
        if t is not None and type(t) is not Tensor:  # fake, functional or other subclass tensors
            return False
    grad = torch.is_grad_enabled()
    for t in sources:
        if t is None:
            continue
        if type(t) not in _PLAIN or t.is_inference() or (grad and t.requires_grad):
            return False
    return True


def get(
    owner: nn.Module, key: Any, sources: Sequence[Optional[Tensor]], make: Callable[[], List[Optional[Tensor]]]
) -> List[Optional[Tensor]]:
    """``make()``'s result for ``owner``, recomputed when ``key`` or any source tensor changed."""
    stamp = [(t, t._version, t.data_ptr()) for t in sources if t is not None]
    entry = _CACHE.get(owner)
    if entry is not None and entry[0] == key and len(entry[1]) == len(stamp):
        if all(a is b and va == vb and pa == pb for (a, va, pa), (b, vb, pb) in zip(entry[1], stamp)):
            return entry[2]
    with torch.no_grad():
        value = make()
    _CACHE[owner] = (key, stamp, value)
    return value


def drop(owner: nn.Module) -> None:
    """Forget ``owner``'s cached weights (back in training they would only hold memory)."""
    _CACHE.pop(owner, None)
