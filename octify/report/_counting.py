"""One counting run: the model on fake tensors under FlopCounterMode, attributed to leaf modules.

Nothing real is computed: parameters, buffers and inputs are replaced by FakeTensors (shapes
and dtypes only) through ``torch.func.functional_call``, so the user's model is neither moved
nor modified; the forward hooks used for attribution are removed before returning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from ..nn import OctaveDual, OctaveMerge, OctaveSplit
from ..nn.batchnorm import OctBatchNormNd
from ..nn.octconv import OctConvNd
from ..utils.inputs import describe

# octify's octave layers are rows of their own, whatever submodules they hold (OctBatchNorm2d's
# bn_h/bn_l, OctaveDual's module): they are what convert() puts where a plain layer was. The
# 1-D and 3-D octave convs and norms are rows alike; FlopCounterMode counts every convolution
# (1-D, 2-D, 3-D) the same way, 2 FLOPs per multiply-accumulate.
_ATOMIC = (OctConvNd, OctBatchNormNd, OctaveDual, OctaveSplit, OctaveMerge)

OTHER = "(other)"  # pseudo-row: FLOPs outside any leaf module, parameters owned by containers


@dataclass
class RawRow:
    name: str
    type: str
    calls: int = 0
    flops: int = 0
    feature_map_bytes: int = 0
    output_shapes: List[List[int]] = field(default_factory=list)
    params: int = 0


@dataclass
class RawCount:
    rows: List[RawRow]
    flops: int
    params: int


# A container with nothing in it (a ResNet block's empty nn.Sequential shortcut) returns its input:
# no layer, no new tensor. Counting it would count its input twice, and only in the original,
# since a converted graph has no node for it.
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _is_leaf(module: nn.Module) -> bool:
    if isinstance(module, _ATOMIC):
        return True
    return next(iter(module.children()), None) is None and not isinstance(module, _CONTAINERS)


def _fake_failure_hint(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in ("DataDependentOutputException", "DynamicOutputShapeException", "UnsupportedOperatorException"):
        return (
            " (counting runs on fake tensors, which carry shapes but no values: a model whose control flow "
            "or output shapes depend on tensor values cannot be profiled)"
        )
    return ""


def count(model: nn.Module, inputs: Tuple[Any, ...], who: str) -> RawCount:
    """Run ``model(*inputs)`` on fake tensors; FLOPs per leaf module as FlopCounterMode counts them."""
    names: Dict[int, str] = {}
    leaves: List[Tuple[str, nn.Module]] = []
    inside: set = set()  # modules held by an atomic leaf: neither rows nor hooked
    for name, module in model.named_modules():
        if id(module) in inside:
            continue
        names[id(module)] = name
        if _is_leaf(module):
            leaves.append((name, module))
            inside.update(id(m) for m in module.modules() if m is not module)

    rows: Dict[str, RawRow] = {}
    stack: List[list] = []  # [name, flops at entry, flops of nested leaf calls]
    counter = FlopCounterMode(display=False)

    def pre_hook(module: nn.Module, args: Any) -> None:
        stack.append([names[id(module)], counter.get_total_flops(), 0])

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        if not stack or stack[-1][0] != names[id(module)]:
            return
        name, start, nested = stack.pop()
        spent = counter.get_total_flops() - start
        row = rows.get(name)
        if row is None:
            row = rows[name] = RawRow(name, type(module).__name__)
        row.calls += 1
        row.flops += spent - nested
        for t in tree_flatten(output)[0]:
            if isinstance(t, Tensor):
                row.feature_map_bytes += t.numel() * t.element_size()
                row.output_shapes.append(list(t.shape))
        if stack:
            stack[-1][2] += spent

    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    state: Dict[str, Tensor] = {}
    for n, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
        state[n] = fake_mode.from_tensor(t)
    fake_inputs = tree_map(lambda v: fake_mode.from_tensor(v) if isinstance(v, Tensor) else v, inputs)

    handles = []
    try:
        for _, module in leaves:
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook, always_call=True))
        try:
            with fake_mode, torch.no_grad(), counter:
                torch.func.functional_call(model, state, fake_inputs, strict=False, tie_weights=True)
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, NotImplementedError) as exc:
            shapes = ", ".join(f"{d['dtype']}{d['shape']}" for d in describe(inputs))
            raise ValueError(
                f"{who}: {type(model).__name__} failed on the example inputs ({shapes}): "
                f"{type(exc).__name__}: {exc}{_fake_failure_hint(exc)}"
            ) from exc
    finally:
        for h in handles:
            h.remove()

    total_flops = counter.get_total_flops()
    ordered = list(rows.values())
    # Leaves that never ran but own parameters (e.g. an unused auxiliary head) still hold their params.
    for name, module in leaves:
        if name not in rows and any(True for _ in module.parameters()):
            ordered.append(RawRow(name, type(module).__name__))
    # Parameters: from the real model; a shared parameter counts once, at its first row.
    seen = set()
    by_name = dict(leaves)
    for row in ordered:
        for p in by_name[row.name].parameters():
            if id(p) not in seen:
                seen.add(id(p))
                row.params += p.numel()
    other_params = sum(p.numel() for p in model.parameters() if id(p) not in seen)
    other_flops = total_flops - sum(r.flops for r in ordered)
    if other_params or other_flops:
        ordered.append(RawRow(OTHER, "", flops=other_flops, params=other_params))
    params = sum(p.numel() for p in model.parameters())
    return RawCount(ordered, total_flops, params)
