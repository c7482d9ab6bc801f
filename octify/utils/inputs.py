"""``example_inputs``: what octify.convert, octify.profile and octify.compare take, and the default.

One rule for all three: a Tensor, or a tuple of positional inputs (each a Tensor, a nested
tuple/list/dict of Tensors, or a plain Python value). A list is refused rather than guessed
at: it could be the positional inputs or one list argument.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from ..errors import OptionError, OptionTypeError

__all__ = ["normalize_inputs", "split_example_inputs", "default_shape", "default_inputs", "tensors_of", "describe", "batch_of"]

_SCALARS = (bool, int, float, complex, str, type(None), torch.dtype, torch.device)
DEFAULT_SIZE = 224


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
    raise OptionTypeError(
        f"{who}: example_inputs{where} must be a Tensor, a tuple/list/dict of Tensors or a plain Python value, "
        f"found {type(value).__name__}"
    )


def normalize_inputs(example_inputs: Any, who: str) -> Tuple[Any, ...]:
    """The positional inputs as a tuple; TypeError/ValueError when they are not what octify takes."""
    if isinstance(example_inputs, Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        raise OptionTypeError(
            f"{who}: example_inputs must be a Tensor or a tuple of positional inputs, found a list of "
            f"{len(example_inputs)}; pass tuple(inputs) for positional inputs, or (inputs,) for one list argument"
        )
    if not isinstance(example_inputs, tuple):
        raise OptionTypeError(
            f"{who}: example_inputs must be a Tensor or a tuple of positional inputs "
            f"(an OctConv2d alone takes ((high, low),)), found {type(example_inputs).__name__}"
        )
    if len(example_inputs) == 0:
        raise OptionError(f"{who}: example_inputs must hold at least one input Tensor, found an empty tuple")
    _check_leaf(example_inputs, "", who)
    if not tensors_of(example_inputs):
        raise OptionError(
            f"{who}: example_inputs must hold at least one Tensor, found only "
            f"{', '.join(type(v).__name__ for v in example_inputs)}"
        )
    return example_inputs


def split_example_inputs(example_inputs: Any, who: str) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """(positional, keyword) inputs: a dict of str keys is keyword inputs, anything else goes
    through :func:`normalize_inputs`."""
    if isinstance(example_inputs, dict):
        if not example_inputs or not all(isinstance(k, str) for k in example_inputs):
            raise OptionTypeError(f"{who}: example_inputs as a dict must map forward()'s parameter names to inputs, found {example_inputs!r}")
        _check_leaf(example_inputs, "", who)
        if not tensors_of(example_inputs):
            raise OptionError(f"{who}: example_inputs must hold at least one Tensor, found none in {list(example_inputs)}")
        return (), dict(example_inputs)
    return normalize_inputs(example_inputs, who), {}


# Default inputs of 1-D and 3-D models: one second of 16 kHz audio; 16 frames of 112 x 112
# (torchvision's video models).
DEFAULT_LENGTH_1D = 16000
DEFAULT_VIDEO = (16, 112, 112)


def default_shape(model: nn.Module) -> Tuple[int, ...]:
    """(1, C, 224, 224), C the input channels of the model's first conv (3 without one); for a
    first Conv1d (1, C, 16000), for a first Conv3d (1, C, 16, 112, 112)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return (1, m.in_channels, DEFAULT_SIZE, DEFAULT_SIZE)
        if isinstance(m, nn.Conv1d):
            return (1, m.in_channels, DEFAULT_LENGTH_1D)
        if isinstance(m, nn.Conv3d):
            return (1, m.in_channels, *DEFAULT_VIDEO)
    return (1, 3, DEFAULT_SIZE, DEFAULT_SIZE)


def default_inputs(model: nn.Module) -> Tuple[Tensor]:
    """One uninitialised input of :func:`default_shape` in the model's floating dtype (for shapes only)."""
    ref = next(iter(model.parameters()), None)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return (torch.empty(default_shape(model), dtype=dtype),)


def tensors_of(inputs: Any) -> List[Tensor]:
    leaves, _ = tree_flatten(inputs)
    return [t for t in leaves if isinstance(t, Tensor)]


def describe(inputs: Tuple[Any, ...]) -> List[Dict[str, Any]]:
    """One ``{"shape", "dtype"}`` per input Tensor, in order."""
    return [{"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for t in tensors_of(inputs)]


def batch_of(inputs: Tuple[Any, ...]) -> Optional[int]:
    ts = tensors_of(inputs)
    return int(ts[0].shape[0]) if ts and ts[0].dim() > 0 else None
