"""Verify: run the converted model on fake example inputs and compare its outputs with the original's."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode

from ._errors import ConversionError
from ._trace import eval_mode


def _structure(value: Any) -> Any:
    """Output structure with tensors replaced by their shapes (what must match)."""
    return fx.node.map_aggregate(value, lambda v: ("Tensor", tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else type(v).__name__)


def verify(original: fx.GraphModule, converted: fx.GraphModule, fm: FakeTensorMode, fake_inputs: tuple) -> None:
    expected = next(n for n in original.graph.nodes if n.op == "output").meta["val"]
    try:
        with eval_mode(converted), fm:
            got = converted(*fake_inputs)
    except Exception as e:
        raise ConversionError(
            f"the converted model fails on example_inputs: {type(e).__name__}: {e}. "
            "Hint: pass verify=False to inspect it, and report the model to octify."
        ) from e
    if _structure(got) != _structure(expected):
        raise ConversionError(
            f"the converted model's outputs {_structure(got)} differ from the original's {_structure(expected)}. "
            "Hint: exclude the convs around the mismatch with exclude=[...] and report the model to octify."
        )
