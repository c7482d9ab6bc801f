"""The pass's side of :class:`octify.rules.RuleContext`: emitting through the graph builder,
moving values between pairs and plain tensors, and recording each step with its reason."""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

import torch
import torch.fx as fx
from torch import nn

from ..nn import ChannelSplit, OctaveMerge, OctaveSplit, Realign
from ..nn._resample import low_shape, octave_axes
from ..nn.partition import Partition
from ..rules import Decline, EmitError, Octave
from .graph_builder import GraphBuilder
from .plan import ConvPlan
from .recorder import Recorder

__all__ = ["ConversionContext", "map_values", "octaves_in"]


def map_values(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fx.node.map_aggregate`` that treats an :class:`Octave` as one value."""
    if isinstance(value, Octave):
        return fn(value)
    if isinstance(value, tuple):
        mapped = tuple(map_values(v, fn) for v in value)
        return type(value)(*mapped) if hasattr(value, "_fields") else mapped
    if isinstance(value, list):
        return [map_values(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_values(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(map_values(value.start, fn), map_values(value.stop, fn), map_values(value.step, fn))
    return fn(value)


def octaves_in(value: Any) -> list[Octave]:
    found: list[Octave] = []
    map_values(value, lambda v: found.append(v) if isinstance(v, Octave) else None)
    return found


def _flatten(value: Any) -> list:
    out: list = []
    fx.node.map_aggregate(value, lambda v: out.append(v) or v)
    return out


class ConversionContext:
    """What the rules see of one conversion (see :class:`octify.rules.RuleContext`)."""

    def __init__(
        self,
        builder: GraphBuilder,
        recorder: Recorder,
        original_modules: Mapping[str, nn.Module],
        plans: Mapping[fx.Node, ConvPlan],
        *,
        octave: int,
        transfer_weights: bool,
    ) -> None:
        self.builder = builder
        self.recorder = recorder
        self._original = original_modules
        self._plans = plans
        self.octave = octave
        self.transfer_weights = transfer_weights
        self._merged: Dict[Octave, fx.Node] = {}
        self._splits: Dict[tuple, Octave] = {}

    # -- nodes and modules: the builder's ----------------------------------------------------
    def emit(self, op: str, target: Any, args: tuple = (), kwargs: Optional[dict] = None) -> fx.Node:
        return self.builder.emit(op, target, args, kwargs)

    def getitem(self, node: fx.Node, i: int) -> fx.Node:
        return self.builder.getitem(node, i)

    def copy(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        return self.builder.copy(node, args, kwargs)

    def erase(self, *nodes: fx.Node) -> None:
        self.builder.erase(*nodes)

    def original_module(self, target: str) -> nn.Module:
        return self._original[target]

    def install(self, node: fx.Node, module: nn.Module) -> str:
        return self.builder.install(str(node.target), module)

    def add_module(self, prefix: str, module: nn.Module) -> str:
        return self.builder.add_module(prefix, module)

    def call_pair_module(self, name: str, x: Any, partition: Partition) -> Any:
        arg = (x.high, x.low) if isinstance(x, Octave) else x
        out = self.emit("call_module", name, (arg,))
        if isinstance(out.meta["val"], tuple):
            return Octave(self.getitem(out, 0), self.getitem(out, 1), partition)
        return out

    # -- the plan and the record ---------------------------------------------------------------
    def plan_of(self, node: fx.Node) -> ConvPlan:
        return self._plans[node]

    def describe(self, node: fx.Node) -> str:
        return self.recorder.describe(node)

    def threaded(self, node: fx.Node) -> None:
        self.recorder.threaded(node)

    def record_conv(self, node: fx.Node, alpha_in: float, alpha_out: float, plain_reason: Optional[str]) -> None:
        self.recorder.conv(node, alpha_in, alpha_out, plain_reason)

    # -- pairs ---------------------------------------------------------------------------------
    def merge(self, value: Octave, reason: str) -> fx.Node:
        if value in self._merged:  # one OctaveMerge per pair, however many ops need it
            return self._merged[value]
        name = self.add_module("merge", OctaveMerge(partition=value.partition, octave=self.octave))
        out = self.emit("call_module", name, ((value.high, value.low),))
        self._merged[value] = out
        self.recorder.plumbing("merge", reason)
        return out

    def split(self, node: fx.Node, partition: Partition, reason: str) -> Octave:
        key = (node, partition)
        if key in self._splits:
            return self._splits[key]
        val = node.meta["val"]
        per_channel = val.dim() >= 3 and val.shape[2:].numel() == 1
        module = ChannelSplit(partition) if per_channel else OctaveSplit(partition=partition, octave=self.octave)
        name = self.add_module("split", module)
        out = self.emit("call_module", name, (node,))
        pair = Octave(self.getitem(out, 0), self.getitem(out, 1), partition)
        self._splits[key] = pair
        if not per_channel:  # slicing a per-channel scale costs nothing worth reporting
            self.recorder.plumbing("split", reason)
        return pair

    def align(self, value: Octave, target: Partition, reason: str) -> Octave:
        if value.partition == target:
            return value
        name = self.add_module("align", Realign(value.partition, target, self.octave))
        out = self.emit("call_module", name, ((value.high, value.low),))
        self.recorder.plumbing("align", f"{reason} ({value.partition.moved(target)} channels change branch)")
        return Octave(self.getitem(out, 0), self.getitem(out, 1), target)

    def low_fits(self, high: fx.Node, low: fx.Node) -> Optional[str]:
        hv, lv = high.meta["val"], low.meta["val"]
        if not (isinstance(hv, torch.Tensor) and isinstance(lv, torch.Tensor)) or not 3 <= hv.dim() <= 5 or lv.dim() != hv.dim():
            return "the op does not give 3-D, 4-D or 5-D tensors"
        need = low_shape(list(hv.shape[2:]), self.octave, octave_axes(hv.dim()))
        if list(lv.shape[2:]) != need:
            show = lambda sizes: "x".join(map(str, sizes))  # noqa: E731
            return f"the low branch would be {show(lv.shape[2:])}, the octave grid of {show(hv.shape[2:])} needs {show(need)}"
        return None

    def per_branch_with(
        self, node: fx.Node, x: Octave, emit: Callable[[fx.Node], fx.Node],
        emit_low: Optional[Callable[[fx.Node], fx.Node]] = None,
    ) -> Octave:
        try:
            h = emit(x.high)
        except EmitError as e:
            raise Decline(f"it fails on the high branch: {e}") from None
        try:
            l = (emit_low or emit)(x.low)
        except EmitError as e:
            self.erase(h)
            raise Decline(f"it fails on the low branch: {e}") from None
        why = self.low_fits(h, l)
        if why is not None:
            self.erase(l, h)
            raise Decline(why)
        self.threaded(node)
        return Octave(h, l, x.partition)

    def per_branch(self, node: fx.Node, args: tuple, kwargs: dict) -> Octave:
        pairs = octaves_in((args, kwargs))
        if len({p.partition for p in pairs}) != 1:
            raise Decline("its inputs are pairs with different partitions")
        for v in _flatten((args, kwargs)):
            if isinstance(v, fx.Node) and isinstance(v.meta.get("val"), torch.Tensor) and v.meta["val"].dim() > 0:
                raise Decline("it mixes a pair with a plain tensor")
        part = pairs[0].partition
        try:
            h = self.emit(node.op, node.target, *map_values((args, kwargs), lambda v: v.high if isinstance(v, Octave) else v))
        except EmitError as e:
            raise Decline(f"it fails on the high branch: {e}") from None
        try:
            l = self.emit(node.op, node.target, *map_values((args, kwargs), lambda v: v.low if isinstance(v, Octave) else v))
        except EmitError as e:
            self.erase(h)
            raise Decline(f"it fails on the low branch: {e}") from None
        hv, lv = h.meta["val"], l.meta["val"]
        why = self.low_fits(h, l)
        if why is None and (hv.shape[1] != len(part.high) or lv.shape[1] != len(part.low)):
            why = "it changes the number of channels"
        if why is not None:
            self.erase(l, h)
            raise Decline(why)
        self.threaded(node)
        return Octave(h, l, part)
