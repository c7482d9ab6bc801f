"""Functions over octave pairs that converted graphs call (stable paths: saved models refer to them)."""

from __future__ import annotations

import functools
import importlib
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.fx
from torch import Tensor

__all__ = ["branch", "single", "pair_size", "shape_guard", "rebuild_mapping", "to_int", "assert_none"]


def branch(pair: Union[Tensor, Tuple[Tensor, Tensor]], index: int) -> Tensor:
    """``pair[index]``: the high (0) or low (1) branch of an octave module's output. Converted
    graphs read pairs through this rather than ``operator.getitem`` because octave modules are
    typed to return a Tensor or a pair, and TorchScript indexes a Union only after a check.

    >>> branch((torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)), 1).shape
    torch.Size([1, 2, 2, 2])
    """
    if isinstance(pair, tuple):
        return pair[0] if index == 0 else pair[1]
    raise ValueError(f"octify: expected a (high, low) pair, found a single Tensor of shape {list(pair.shape)}")


def single(y: Union[Tensor, Tuple[Tensor, Tensor]]) -> Tensor:
    """The output of an octave module that has one branch here (an OctConv2d with alpha_out 0,
    a one-branch norm), as the Tensor it is: TorchScript needs the Union narrowed before a plain
    module takes it.

    >>> single(torch.zeros(1, 2)).shape
    torch.Size([1, 2])
    """
    if isinstance(y, tuple):
        raise ValueError("octify: expected a single Tensor, found a (high, low) pair")
    return y


def pair_size(x: Tuple[Tensor, Tensor], channels: int, dim: Optional[int] = None) -> Union[torch.Size, int]:
    """The size of the plain tensor a (high, low) pair stands for: the high branch's batch and
    spatial size, and all ``channels``; ``x.size(dim)`` with ``dim``. Reading a shape needs no merge.

    >>> pair_size((torch.zeros(2, 6, 8, 8), torch.zeros(2, 2, 4, 4)), 8)
    torch.Size([2, 8, 8, 8])
    >>> pair_size((torch.zeros(2, 6, 8, 8), torch.zeros(2, 2, 4, 4)), 8, -1)
    8
    """
    high = x[0]
    size = torch.Size([high.shape[0], channels, *high.shape[2:]])
    return size if dim is None else size[dim]


@torch.fx.node.has_side_effect  # not dead code: it checks
def shape_guard(condition: object, expected: bool, where: str) -> None:
    """Raise unless ``condition`` is ``expected``: a converted model runs the branch its example
    inputs took at ``where`` (its control flow was resolved on their shapes), and refuses an input
    for which the original would take another branch rather than compute something else.

    >>> shape_guard(224 % 32 == 0, True, "model.py:12: if h % 32 == 0:")
    >>> shape_guard(225 % 32 == 0, True, "model.py:12: if h % 32 == 0:")
    Traceback (most recent call last):
    ...
    ValueError: octify: this model was converted with example inputs for which `if h % 32 == 0:` (model.py:12) was True; for this input it is False, so the original would run another branch. Convert it again with example_inputs of this input's shape.
    """
    if bool(condition) != expected:
        place, _, code = where.partition(": ")
        raise ValueError(
            f"octify: this model was converted with example inputs for which `{code}` ({place}) was {expected}; "
            f"for this input it is {not expected}, so the original would run another branch. "
            "Convert it again with example_inputs of this input's shape."
        )


@functools.lru_cache(maxsize=None)
def _class(path: str) -> type:
    module, _, name = path.rpartition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def rebuild_mapping(cls: str, values: Dict[str, Any]) -> Any:
    """``values`` in the mapping type the original model returned (``module:QualName``: an
    OrderedDict, a Hugging Face ModelOutput): torch.fx's graphs carry plain dicts.

    >>> out = rebuild_mapping("collections:OrderedDict", {"a": 1})
    >>> type(out).__name__, dict(out)
    ('OrderedDict', {'a': 1})
    """
    return _class(cls)(**values)


def to_int(x: Any) -> int:
    """``int(x)`` as a graph can call it (``int`` itself cannot be traced again when a saved
    converted model is loaded).

    >>> to_int(224 / 2)
    112
    """
    return int(x)


@torch.fx.node.has_side_effect
def assert_none(value: Any, message: str) -> None:
    """torch.fx's check that a parameter kept at its default ``None`` is still None, under a name
    a loaded model's generated code can wrap (torch.fx's own breaks tracing after a reload)."""
    if value is not None:
        raise ValueError(f"octify: {message}")
