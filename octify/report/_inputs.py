"""Checking and describing ``example_inputs``: a Tensor, or a tuple of positional inputs."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

_SCALARS = (bool, int, float, complex, str, type(None), torch.dtype, torch.device)


def _check_leaf(value: Any, where: str, who: str) -> None:
    if isinstance(value, (Tensor,) + _SCALARS):
        return
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _check_leaf(v, f"{where}[{i}]", who)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_leaf(v, f"{where}[{k!r}]", who)
        return
    raise TypeError(
        f"{who}: example_inputs{where} must be a Tensor, a tuple/list/dict of Tensors or a plain Python value, "
        f"found {type(value).__name__}"
    )


def normalize_inputs(example_inputs: Any, who: str) -> Tuple[Any, ...]:
    """The positional inputs as a tuple; TypeError/ValueError when they are not what profiling takes."""
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        raise TypeError(
            f"{who}: example_inputs must be a Tensor or a tuple of positional inputs, found a list of "
            f"{len(example_inputs)}; pass tuple(inputs) for positional inputs, or (inputs,) for one list argument"
        )
    if not isinstance(example_inputs, tuple):
        raise TypeError(
            f"{who}: example_inputs must be a Tensor or a tuple of positional inputs "
            f"(an OctConv2d alone takes ((high, low),)), found {type(example_inputs).__name__}"
        )
    if len(example_inputs) == 0:
        raise ValueError(f"{who}: example_inputs must hold at least one input Tensor, found an empty tuple")
    _check_leaf(example_inputs, "", who)
    if not tensors_of(example_inputs):
        raise ValueError(
            f"{who}: example_inputs must hold at least one Tensor, found only "
            f"{', '.join(type(v).__name__ for v in example_inputs)}"
        )
    return example_inputs


def tensors_of(inputs: Any) -> List[Tensor]:
    leaves, _ = tree_flatten(inputs)
    return [t for t in leaves if isinstance(t, Tensor)]


def describe(inputs: Tuple[Any, ...]) -> List[Dict[str, Any]]:
    """One ``{"shape", "dtype"}`` per input Tensor, in order."""
    return [{"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for t in tensors_of(inputs)]


def batch_of(inputs: Tuple[Any, ...]) -> Optional[int]:
    ts = tensors_of(inputs)
    return int(ts[0].shape[0]) if ts and ts[0].dim() > 0 else None
