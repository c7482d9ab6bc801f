"""Stage 7, verify: run the converted model on fake example inputs and compare its outputs with the original's."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode

from ..errors import ConversionError, first_line
from .shape_prop import call_module, eval_mode


class _FakeRun(fx.Interpreter):
    """Runs a GraphModule on fake tensors, leaf modules that read tensor values included."""

    def __init__(self, module: fx.GraphModule, fm: FakeTensorMode) -> None:
        super().__init__(module)
        self.fm = fm

    def placeholder(self, target: Any, args: Any, kwargs: Any) -> Any:
        if str(target).startswith("**"):
            return {}  # fx.Interpreter would hand a **kwargs placeholder the rest of the positional inputs
        return super().placeholder(target, args, kwargs)

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        return call_module(self.fm, self.fetch_attr(target), args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        with self.fm:
            return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        with self.fm:
            return super().call_method(target, args, kwargs)


def _structure(value: Any) -> Any:
    """Output structure with tensors replaced by their shapes (what must match)."""
    return fx.node.map_aggregate(value, lambda v: ("Tensor", tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else type(v).__name__)


def verify(original: fx.GraphModule, converted: fx.GraphModule, fm: FakeTensorMode, fake_inputs: tuple) -> None:
    expected = next(n for n in original.graph.nodes if n.op == "output").meta["val"]
    try:
        with eval_mode(converted):
            got = _FakeRun(converted, fm).run(*fake_inputs)
    except Exception as e:
        raise ConversionError(
            f"the converted model fails on example_inputs: {first_line(e)}.",
            hint="keep the part that fails plain with exclude=[...] or leaf_modules=[...], or pass verify=False "
            "to get the model anyway and inspect it.",
            cli_hint="keep the part that fails plain with --exclude GLOB or --leaf GLOB, or pass --no-verify, which "
            "writes the model only if it runs on the example input.",
        ) from e
    if _structure(got) != _structure(expected):
        raise ConversionError(
            f"the converted model's outputs {_structure(got)} differ from the original's {_structure(expected)}.",
            hint="keep the convs around the mismatch plain with exclude=[...].",
            cli_hint="keep the convs around the mismatch plain with --exclude GLOB.",
        )
