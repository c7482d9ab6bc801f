"""Rewrite: re-emit the traced graph, threading octave pairs through the ops that have rules.

Every value of the new graph is either a plain ``fx.Node`` or an :class:`~octify.rules.Octave`
pair. Each emitted node is evaluated at once on fake tensors (``meta['val']``), so rules can
check shapes (the low grid, channel counts) while they rewrite.
"""

from __future__ import annotations

import inspect
import itertools
import operator
import warnings
from typing import Any, Callable, Dict, Mapping, Optional

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ._errors import ConversionError
from ._modules import ChannelSplit, Realign
from ._plan import ConvPlan
from ._trace import run_node
from .nn._resample import low_size
from .nn.partition import Partition
from .nn.split_merge import OctaveMerge, OctaveSplit
from .record import ConversionRecord, ConvRecord, MergeRecord
from .rules import Decline, Octave, RuleKey, _Entry


def describe(node: fx.Node, modules: Mapping[str, nn.Module]) -> str:
    """The op of a node, as a person names it (module type, function or method)."""
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    target = node.target
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", str(target))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    return f"torch.{name}" if mod.startswith("torch") else name


def _flatten(value: Any) -> list:
    out: list = []
    fx.node.map_aggregate(value, lambda v: out.append(v) or v)
    return out


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    """map_aggregate that also descends into Octave values' containers but treats Octave as a leaf."""
    if isinstance(value, Octave):
        return fn(value)
    if isinstance(value, tuple):
        mapped = tuple(_map(v, fn) for v in value)
        return type(value)(*mapped) if hasattr(value, "_fields") else mapped
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_map(value.start, fn), _map(value.stop, fn), _map(value.step, fn))
    return fn(value)


def _octaves(value: Any) -> list[Octave]:
    found: list[Octave] = []
    _map(value, lambda v: found.append(v) if isinstance(v, Octave) else None)
    return found


class _EmitError(Exception):
    pass


class Rewriter:
    """State of one conversion: the new graph, the value of each original node, the record."""

    def __init__(
        self,
        gm: fx.GraphModule,
        root: nn.Module,
        plans: Dict[fx.Node, ConvPlan],
        rules: Dict[RuleKey, _Entry],
        record: ConversionRecord,
        fm: FakeTensorMode,
        *,
        octave: int,
        transfer_weights: bool,
        training: Dict[str, bool],
    ) -> None:
        self.gm = gm
        self.orig_modules: Dict[str, nn.Module] = dict(gm.named_modules())
        self.root = root
        self.modules: Dict[str, nn.Module] = dict(root.named_modules())
        self.plans = plans
        self.rules = rules
        self.record = record
        self.fm = fm
        self.octave = octave
        self.transfer_weights = transfer_weights
        self.graph = fx.Graph()
        self.env: Dict[fx.Node, Any] = {}
        self.new_modules: Dict[str, bool] = {}  # name -> training flag it must end with
        self._training = training
        self._merged: Dict[Octave, fx.Node] = {}
        self._splits: Dict[tuple, Octave] = {}
        self._warned: set[str] = set()
        self._ids = itertools.count()
        self.node: Optional[fx.Node] = None  # the original node being rewritten

    # -- graph building ------------------------------------------------------------------------
    def emit(self, op: str, target: Any, args: tuple = (), kwargs: Optional[dict] = None) -> fx.Node:
        """Append a node to the new graph and evaluate it on fake tensors."""
        node = self.graph.create_node(op, target, args, kwargs or {})
        try:
            node.meta["val"] = run_node(self.fm, self.modules, node, self.root)
        except Exception as e:
            self.graph.erase_node(node)
            raise _EmitError(f"{type(e).__name__}: {e}") from e
        return node

    def getitem(self, node: fx.Node, i: int) -> fx.Node:
        return self.emit("call_function", operator.getitem, (node, i))

    def original_module(self, target: str) -> nn.Module:
        return self.orig_modules[target]

    def set_module(self, name: str, module: nn.Module, like: Optional[str] = None) -> str:
        """Install ``module`` at ``name`` in the new model; it keeps the training flag of ``like``."""
        parent = self.root
        *path, leaf = name.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, leaf, module)
        module.train(False)  # fake execution must not touch training-time state; the flag is set at the end
        self.modules[name] = module
        self.new_modules[name] = self._training.get(like or name, self.root.training)
        return name

    def add_module(self, prefix: str, module: nn.Module) -> str:
        name = f"octify_{prefix}_{next(self._ids)}"
        return self.set_module(name, module, like="")

    def call_pair_module(self, name: str, x: Any, partition: Partition) -> Any:
        """Call module ``name`` on ``x`` (a node or an Octave) and wrap a pair result as an Octave."""
        arg = (x.high, x.low) if isinstance(x, Octave) else x
        out = self.emit("call_module", name, (arg,))
        if isinstance(out.meta["val"], tuple):
            return Octave(self.getitem(out, 0), self.getitem(out, 1), partition)
        return out

    def copy(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        try:
            return self.emit(node.op, node.target, args, kwargs)
        except _EmitError as e:
            raise ConversionError(f"re-emitting `{node.format_node()}` failed: {e}. Hint: report this model to octify.") from e

    # -- pair plumbing -------------------------------------------------------------------------
    def _log(self, kind: str, reason: str) -> None:
        node = self.node
        target = describe(node, self.orig_modules) if node is not None else "?"
        self.record.merges.append(MergeRecord(kind, node.name if node is not None else "?", target, reason))

    def merge(self, value: Octave, reason: str) -> fx.Node:
        """The plain tensor of a pair (one OctaveMerge per pair, however many ops need it)."""
        if value in self._merged:
            return self._merged[value]
        name = self.add_module("merge", OctaveMerge(partition=value.partition, octave=self.octave))
        out = self.emit("call_module", name, ((value.high, value.low),))
        self._merged[value] = out
        self._log("merge", reason)
        return out

    def split(self, node: fx.Node, partition: Partition, reason: str) -> Octave:
        """A plain (N, C, H, W) tensor split into a pair; a per-channel (N, C, 1, 1) one is only sliced."""
        key = (node, partition)
        if key in self._splits:
            return self._splits[key]
        val = node.meta["val"]
        per_channel = val.dim() == 4 and val.shape[-2:] == (1, 1)
        module = ChannelSplit(partition) if per_channel else OctaveSplit(partition=partition, octave=self.octave)
        name = self.add_module("split", module)
        out = self.emit("call_module", name, (node,))
        pair = Octave(self.getitem(out, 0), self.getitem(out, 1), partition)
        self._splits[key] = pair
        if not per_channel:
            self._log("split", reason)
        return pair

    def align(self, value: Octave, target: Partition, reason: str) -> Octave:
        """Move the channels whose branch differs between ``value.partition`` and ``target``."""
        if value.partition == target:
            return value
        name = self.add_module("align", Realign(value.partition, target, self.octave))
        out = self.emit("call_module", name, ((value.high, value.low),))
        self._log("align", f"{reason} ({value.partition.moved(target)} channels change branch)")
        return Octave(self.getitem(out, 0), self.getitem(out, 1), target)

    def low_fits(self, high: fx.Node, low: fx.Node) -> Optional[str]:
        """None when ``low`` lies on the octave grid of ``high``, else why not."""
        hv, lv = high.meta["val"], low.meta["val"]
        if not (isinstance(hv, torch.Tensor) and isinstance(lv, torch.Tensor)) or hv.dim() != 4 or lv.dim() != 4:
            return "the op does not give 4-D tensors"
        need = (low_size(hv.shape[-2], self.octave), low_size(hv.shape[-1], self.octave))
        if tuple(lv.shape[-2:]) != need:
            return f"the low branch would be {lv.shape[-2]}x{lv.shape[-1]}, the octave grid of {hv.shape[-2]}x{hv.shape[-1]} needs {need[0]}x{need[1]}"
        return None

    def per_branch(self, node: fx.Node, args: tuple, kwargs: dict) -> Octave:
        """Run ``node``'s op on the high branch and on the low branch alike."""
        pairs = _octaves((args, kwargs))
        parts = {p.partition for p in pairs}
        if len(parts) != 1:
            raise Decline("its inputs are pairs with different partitions")
        for v in _flatten((args, kwargs)):
            if isinstance(v, fx.Node) and isinstance(v.meta.get("val"), torch.Tensor) and v.meta["val"].dim() > 0:
                raise Decline("it mixes a pair with a plain tensor")
        part = pairs[0].partition
        try:
            h = self.emit(node.op, node.target, *(_map((args, kwargs), lambda v: v.high if isinstance(v, Octave) else v)))
        except _EmitError as e:
            raise Decline(f"it fails on the high branch: {e}") from None
        try:
            l = self.emit(node.op, node.target, *(_map((args, kwargs), lambda v: v.low if isinstance(v, Octave) else v)))
        except _EmitError as e:
            self.graph.erase_node(h)
            raise Decline(f"it fails on the low branch: {e}") from None
        hv, lv = h.meta["val"], l.meta["val"]
        why = self.low_fits(h, l)
        if why is None and (hv.shape[1] != len(part.high) or lv.shape[1] != len(part.low)):
            why = "it changes the number of channels"
        if why is not None:
            self.graph.erase_node(l)
            self.graph.erase_node(h)
            raise Decline(why)
        self.threaded(node)
        return Octave(h, l, part)

    def threaded(self, node: fx.Node) -> None:
        kind = describe(node, self.orig_modules)
        self.record.threaded[kind] = self.record.threaded.get(kind, 0) + 1

    # -- the walk ------------------------------------------------------------------------------
    def _key(self, node: fx.Node) -> Optional[RuleKey]:
        if node.op == "call_module":
            return type(self.orig_modules[node.target])
        if node.op in ("call_function", "call_method"):
            return node.target
        return None

    def run(self) -> fx.Graph:
        for node in self.gm.graph.nodes:
            self.node = node
            self.env[node] = self._visit(node)
        self.node = None
        return self.graph

    def _visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            new = self.graph.placeholder(node.target, type_expr=node.type, default_value=node.args[0] if node.args else inspect.Signature.empty)
            new.meta["val"] = node.meta["val"]
            return new
        args = _map(node.args, lambda v: self.env[v] if isinstance(v, fx.Node) else v)
        kwargs = _map(node.kwargs, lambda v: self.env[v] if isinstance(v, fx.Node) else v)
        if node.op == "output":
            # The model's outputs are always plain.
            out = _map(args[0], lambda v: self.merge(v, "model output") if isinstance(v, Octave) else v)
            self.graph.output(out, type_expr=node.type)
            return None
        if node.op == "get_attr":
            return self.copy(node, args, kwargs)
        has_pair = bool(_octaves((args, kwargs)))
        key = self._key(node)
        entry = self.rules.get(key) if key is not None else None
        if entry is not None and (has_pair or entry.plain):
            try:
                result = entry.rule(self, node, args, kwargs)
                if result is not None:
                    return result
                reason = "its rule returned nothing"
            except Decline as d:
                reason = f"{describe(node, self.orig_modules)} rule declined: {d}"
            except _EmitError as e:
                raise ConversionError(
                    f"the octave rule {entry.rule.__name__} failed on `{node.format_node()}`: {e}. "
                    "Hint: the rule should raise octify.rules.Decline for inputs it cannot handle; "
                    "override it with rules={...: None} to merge there instead."
                ) from e
        else:
            reason = f"no octave rule for {describe(node, self.orig_modules)}"
        if not has_pair:
            return self.copy(node, args, kwargs)
        if entry is None:
            kind = describe(node, self.orig_modules)
            if kind not in self._warned:
                self._warned.add(kind)
                warnings.warn(f"octify: {kind} has no octave rule; the pair is merged back to a plain tensor before it", stacklevel=4)
        args, kwargs = _map((args, kwargs), lambda v: self.merge(v, reason) if isinstance(v, Octave) else v)
        return self.copy(node, args, kwargs)

    # -- convs ---------------------------------------------------------------------------------
    def conv_record(self, node: fx.Node, alpha_in: float, alpha_out: float, plain_reason: Optional[str]) -> None:
        src = node.args[0]
        in_shape = tuple(src.meta["val"].shape) if isinstance(src, fx.Node) else ()
        self.record.convs.append(
            ConvRecord(str(node.target), alpha_in, alpha_out, in_shape, tuple(node.meta["val"].shape), plain_reason)
        )
