"""Trace: a leaf-module-aware torch.fx tracer, and shape propagation on fake tensors."""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Any, Iterator, Sequence, Union

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    unset_fake_temporarily,
)

from ._errors import ConversionError
from .nn.batchnorm import OctBatchNorm2d

LeafSpec = Union[type, str]


class _Tracer(fx.Tracer):
    """torch.fx's tracer plus user leaf modules (types or qualified-name globs) and rule-keyed types."""

    def __init__(self, leaf_types: tuple[type, ...], leaf_globs: tuple[str, ...]) -> None:
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_globs = leaf_globs

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # octify's own layers branch on their input's type: trace them whole.
        if type(m).__module__.startswith("octify.nn."):
            return True
        if isinstance(m, self._leaf_types) or any(fnmatch.fnmatchcase(qualname, g) for g in self._leaf_globs):
            return True
        return super().is_leaf_module(m, qualname)


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
    tracer = _Tracer(leaf_types, leaf_globs)
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


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put every submodule in eval mode: shapes are the same, and fake execution then
    leaves batch-norm counters and other training-time state of real modules untouched."""
    flags = [(m, m.training) for m in module.modules()]
    try:
        for m, _ in flags:
            m.training = False
        yield
    finally:
        for m, was in flags:
            m.training = was


def fake_mode() -> FakeTensorMode:
    return FakeTensorMode(allow_non_fake_inputs=True)


def fakeify(fm: FakeTensorMode, value: Any) -> Any:
    return fx.node.map_aggregate(value, lambda v: fm.from_tensor(v) if isinstance(v, torch.Tensor) else v)


# Modules whose output has their input's shape: fake-running them (batch norm decomposes into
# dozens of ops) is most of the cost of shape propagation, and the answer is known.
_SAME_SHAPE = (nn.BatchNorm2d, OctBatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Dropout, nn.Identity)


def _real(v: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if v.is_floating_point():
        return torch.randn(tuple(v.shape), dtype=v.dtype, generator=g).to(v.device)
    return torch.zeros(tuple(v.shape), dtype=v.dtype).to(v.device)


def call_module(fm: FakeTensorMode, mod: nn.Module, args: Any, kwargs: Any) -> Any:
    """``mod(*args, **kwargs)`` on fake values. A module whose forward reads tensor values (the
    usual reason to make it a leaf: ``if x.sum() > 0``) runs once on real random tensors of
    those shapes instead, and its output is made fake."""
    try:
        with fm:
            return mod(*args, **kwargs)
    except (DataDependentOutputException, DynamicOutputShapeException):
        pass
    g = torch.Generator().manual_seed(0)
    with unset_fake_temporarily(), torch.no_grad():
        real_args, real_kwargs = fx.node.map_aggregate(
            (args, kwargs), lambda v: _real(v, g) if isinstance(v, torch.Tensor) else v
        )
        out = mod(*real_args, **real_kwargs)
    return fakeify(fm, out)


def run_node(fm: FakeTensorMode, modules: dict[str, nn.Module], node: fx.Node, owner: nn.Module) -> Any:
    """Evaluate one node on the fake values of its inputs (``meta['val']``)."""
    args = fx.node.map_arg(node.args, lambda n: n.meta["val"])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: n.meta["val"])
    if node.op == "call_module":
        mod = modules[node.target]
        if type(mod) in _SAME_SHAPE and len(args) == 1 and not kwargs:
            with fm:
                return fx.node.map_aggregate(args[0], lambda t: torch.empty_like(t) if isinstance(t, torch.Tensor) else t)
        return call_module(fm, mod, args, kwargs)
    with fm:
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            obj: Any = owner
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return fakeify(fm, obj)
    raise AssertionError(f"unexpected node op {node.op}")  # placeholders and outputs are handled by callers


def propagate(gm: fx.GraphModule, fm: FakeTensorMode, fake_inputs: tuple) -> None:
    """Store each node's fake value in ``node.meta['val']``; a failure names the node."""
    modules = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(fake_inputs) > len(placeholders):
        raise ConversionError(
            f"example_inputs has {len(fake_inputs)} tensors but {type(gm).__name__}.forward takes {len(placeholders)} inputs. "
            "Hint: pass a tuple with one tensor per positional input of forward()."
        )
    inputs = iter(fake_inputs)
    with eval_mode(gm):
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                try:
                    node.meta["val"] = next(inputs)
                except StopIteration:
                    default = node.args[0] if node.args else None
                    if not node.args:
                        raise ConversionError(
                            f"{type(gm).__name__}.forward needs an input '{node.target}' that example_inputs does not give. "
                            "Hint: pass a tuple with one tensor per positional input of forward()."
                        ) from None
                    node.meta["val"] = default
            elif node.op == "output":
                node.meta["val"] = fx.node.map_arg(node.args[0], lambda n: n.meta["val"])
            else:
                try:
                    node.meta["val"] = run_node(fm, modules, node, gm)
                except Exception as e:
                    raise ConversionError(
                        f"running the model on example_inputs failed at node `{node.format_node()}`: {type(e).__name__}: {e}. "
                        "Hint: check that example_inputs has the shape the model expects (N, C, H, W)."
                    ) from e
