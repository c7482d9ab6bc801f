"""Stage 2, shape propagation: every node's value on fake tensors, in ``node.meta["val"]``.

Fake tensors carry shapes and dtypes but no data, so a whole network is "run" in milliseconds
without touching its weights. A failure is re-raised with the text of the node that failed.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    unset_fake_temporarily,
)

from ..errors import ConversionError
from .ops import CHANNEL_PRESERVING_MODULES

__all__ = ["eval_mode", "fake_mode", "quiet_probes", "fakeify", "call_module", "run_node", "propagate"]

# torch's loggers that speak while the pass runs ops on fake tensors: a meta kernel that raises is
# logged with its traceback ("failed while attempting to run meta for aten.avg_pool2d") before the
# exception reaches the rule that tried it, which then declines and merges -- a correct outcome
# that reads as a crash on the user's screen.
_PROBE_LOGGERS = ("torch._subclasses", "torch.fx.experimental.symbolic_shapes", "torch._dynamo", "torch._inductor")


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


@contextlib.contextmanager
def quiet_probes() -> Iterator[None]:
    """While the pass probes ops on fake tensors: torch's probe loggers off, and the warnings torch
    itself raises there ignored. What a probe finds is the pass's to say, in the record. The
    warnings of the user's own code and of octify pass through."""
    import logging

    loggers = [logging.getLogger(name) for name in _PROBE_LOGGERS]
    loggers += [
        logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
        if name.startswith(tuple(n + "." for n in _PROBE_LOGGERS))
    ]
    was = [lg.disabled for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch(\.|$)")
        try:
            for lg in loggers:
                lg.disabled = True
            yield
        finally:
            for lg, d in zip(loggers, was):
                lg.disabled = d


def fake_mode() -> FakeTensorMode:
    return FakeTensorMode(allow_non_fake_inputs=True)


def fakeify(fm: FakeTensorMode, value: Any) -> Any:
    return fx.node.map_aggregate(value, lambda v: fm.from_tensor(v) if isinstance(v, torch.Tensor) else v)


def _real(v: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if v.is_floating_point():
        return torch.randn(tuple(v.shape), dtype=v.dtype, generator=g).to(v.device)
    return torch.zeros(tuple(v.shape), dtype=v.dtype).to(v.device)


def call_module(fm: FakeTensorMode, mod: nn.Module, args: Any, kwargs: Any) -> Any:
    """``mod(*args, **kwargs)`` on fake values. A module whose forward reads tensor values (the
    usual reason to make it a leaf: ``if x.sum() > 0``) runs once on real random tensors of
    those shapes instead, and its output is made fake. Norms and activations of torch.nn return
    a tensor like their input: made directly (fake batch norm runs its Python decomposition,
    the larger part of a conversion's time)."""
    if type(mod) in CHANNEL_PRESERVING_MODULES and len(args) == 1 and not kwargs:
        with fm:
            return fx.node.map_aggregate(args[0], lambda t: torch.empty_like(t) if isinstance(t, torch.Tensor) else t)
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
        return call_module(fm, modules[node.target], args, kwargs)
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


def propagate(gm: fx.GraphModule, fm: FakeTensorMode, fake_inputs: tuple = ()) -> None:
    """Store each node's fake value in ``node.meta['val']``; a failure names the node. Nodes that
    have one already (the tracer computes them as it follows the example inputs) keep it;
    placeholders without one take ``fake_inputs`` in order, then their defaults."""
    modules = dict(gm.named_modules())
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder" and "val" not in n.meta]
    if len(fake_inputs) > len(placeholders):
        raise ConversionError(
            f"example_inputs has {len(fake_inputs)} tensors but {type(gm).__name__}.forward takes {len(placeholders)} inputs.",
            hint="pass a tuple with one tensor per positional input of forward()."
        )
    inputs = iter(fake_inputs)
    with eval_mode(gm):
        for node in gm.graph.nodes:
            if "val" in node.meta and node.op != "output":
                continue
            if node.op == "placeholder":
                try:
                    node.meta["val"] = next(inputs)
                except StopIteration:
                    if not node.args:
                        raise ConversionError(
                            f"{type(gm).__name__}.forward needs an input '{node.target}' that example_inputs does not give.",
                            hint="pass a tuple with one tensor per positional input of forward()."
                        ) from None
                    node.meta["val"] = node.args[0]
            elif node.op == "output":
                node.meta["val"] = fx.node.map_arg(node.args[0], lambda n: n.meta["val"])
            else:
                try:
                    node.meta["val"] = run_node(fm, modules, node, gm)
                except Exception as e:
                    raise ConversionError(
                        f"running the model on example_inputs failed at node `{node.format_node()}`: {type(e).__name__}: {e}.",
                        hint="check that example_inputs has the shape the model expects (N, C, H, W)."
                    ) from e
