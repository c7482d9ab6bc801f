"""What a batch of user data may be, said once: an input Tensor, or an (input, label) pair."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves

from ..errors import OptionError, OptionTypeError
from ..utils.runtime import device_of

__all__ = ["split_batch", "batches_of", "to_device", "float_outputs"]


def split_batch(batch: Any, who: str) -> Tuple[Tensor, Optional[Tensor]]:
    """``(inputs, labels or None)`` of one batch: a Tensor, or a tuple/list whose first item is the
    input Tensor and whose second, if any, is a Tensor of labels (what a DataLoader over a
    labelled dataset yields)."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        label = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], label
    found = type(batch).__name__ if not isinstance(batch, (tuple, list)) else (
        f"a {type(batch).__name__} of " + ", ".join(type(b).__name__ for b in batch[:3]) if batch else f"an empty {type(batch).__name__}"
    )
    raise OptionTypeError(
        f"{who}: expected batches that are an input Tensor or an (input, label) pair of Tensors, found {found}. "
        "Hint: pass a DataLoader, or a list of Tensors."
    )


def batches_of(data: Iterable[Any], who: str, max_batches: Optional[int] = None) -> Iterator[Tuple[Tensor, Optional[Tensor]]]:
    """Each batch of ``data`` split by :func:`split_batch`, at most ``max_batches`` of them; an
    error that says so when ``data`` gives none."""
    if isinstance(data, Tensor):
        raise OptionTypeError(f"{who}: expected an iterable of batches, found one Tensor. Hint: pass [tensor] for a single batch.")
    try:
        it = iter(data)
    except TypeError:
        raise OptionTypeError(f"{who}: expected an iterable of batches (a DataLoader, a list of Tensors), found {type(data).__name__}") from None
    n = 0
    for batch in it:
        if max_batches is not None and n >= max_batches:
            return
        yield split_batch(batch, who)
        n += 1
    if n == 0:
        raise OptionError(f"{who}: the data gave no batch. Hint: check that the dataset or DataLoader is not empty.")


def float_outputs(out: Any) -> list:
    """The floating-point Tensors among a model's outputs (a Tensor, tuple, dict...), in order."""
    return [t for t in tree_leaves(out) if isinstance(t, Tensor) and t.is_floating_point()]


def to_device(t: Optional[Tensor], like: torch.nn.Module) -> Optional[Tensor]:
    """``t`` on the device of ``like``'s parameters (labels and inputs follow the model)."""
    if t is None:
        return None
    device = device_of(like)
    return t.to(device) if t.device != device else t
