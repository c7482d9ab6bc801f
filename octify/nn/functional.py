"""Functions over octave pairs that converted graphs call (stable paths: saved models refer to them)."""

from __future__ import annotations

import functools
import importlib
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.fx
from torch import Tensor

__all__ = ["branch", "single", "pair_size", "group_norm_pair", "shape_guard", "rebuild_mapping", "to_int", "assert_none"]


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


def group_norm_pair(
    high: Tensor, low: Tensor, high_idx: List[int], low_idx: List[int], num_groups: int,
    weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
) -> Tuple[Tensor, Tensor]:
    """``F.group_norm`` of the plain tensor a (high, low) pair stands for, its groups spanning both
    branches (``GroupNorm(1, C)``: one group over every channel). Each group's statistics are
    taken over its channels on both branches, a low pixel weighing as the high pixels it stands
    for; each branch is then normalised by its channels' groups. Exact at octave 1.

    >>> x = torch.randn(2, 8, 4, 4)
    >>> h, l = group_norm_pair(x[:, :5], x[:, 5:], [0, 1, 2, 3, 4], [5, 6, 7], 1, None, None, 1e-5)
    >>> bool(torch.allclose(torch.cat([h, l], 1), torch.nn.functional.group_norm(x, 1), atol=1e-5))
    True
    """
    channels = len(high_idx) + len(low_idx)
    per = channels // num_groups
    spatial = high[0, 0].numel()
    weigh = spatial / low[0, 0].numel()  # high pixels per low pixel
    gh = torch.nn.functional.one_hot(torch.tensor(high_idx, device=high.device) // per, num_groups).to(high.dtype)
    gl = torch.nn.functional.one_hot(torch.tensor(low_idx, device=low.device) // per, num_groups).to(low.dtype)
    count = per * spatial
    mean = (high.flatten(2).sum(-1) @ gh + low.flatten(2).sum(-1) @ gl * weigh) / count  # (N, groups)
    view = [high.shape[0], -1] + [1] * (high.dim() - 2)
    dh = high - (mean @ gh.t()).view(view)
    dl = low - (mean @ gl.t()).view(view)
    var = (dh.square().flatten(2).sum(-1) @ gh + dl.square().flatten(2).sum(-1) @ gl * weigh) / count
    rstd = torch.rsqrt(var + eps)
    oh = dh * (rstd @ gh.t()).view(view)
    ol = dl * (rstd @ gl.t()).view(view)
    shape = [1, -1] + [1] * (high.dim() - 2)
    if weight is not None:
        oh = oh * weight[high_idx].view(shape)
        ol = ol * weight[low_idx].view(shape)
    if bias is not None:
        oh = oh + bias[high_idx].view(shape)
        ol = ol + bias[low_idx].view(shape)
    return oh, ol


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
