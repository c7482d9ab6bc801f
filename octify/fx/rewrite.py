"""Stage 4, rewrite: re-emit the traced graph, threading octave pairs through the ops that have rules.

Every value of the new graph is either a plain ``fx.Node`` or an :class:`~octify.rules.Octave`
pair. For each node of the original the walk finds its rule (by module type, function or method
name) and calls it with the :class:`~.context.ConversionContext`; where there is no rule, or the
rule declines, the pairs are merged back to plain tensors in front of the op, with the reason
recorded. The model's outputs are always plain.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Mapping, Optional

import torch.fx as fx

from ..utils.warn import warn_user
from ..errors import ConversionError
from ..rules import Decline, EmitError, Octave, RuleEntry, RuleKey, class_name
from .context import ConversionContext, map_values, octaves_in
from .latency import UNIT, unit_of
from .ops import flattens_to_vectors, torch_base

__all__ = ["rewrite"]


def _key(node: fx.Node, modules: Mapping[str, Any], rules: Mapping[RuleKey, RuleEntry]) -> Optional[RuleKey]:
    if node.op == "call_module":
        cls = type(modules[node.target])
        if cls in rules:
            return cls
        if class_name(cls) in rules:
            return class_name(cls)
        # A subclass that keeps its torch.nn base's forward follows the base's rule.
        return torch_base(modules[node.target]) or cls
    if node.op in ("call_function", "call_method"):
        return node.target
    return None


class _Walk:
    def __init__(self, gm: fx.GraphModule, ctx: ConversionContext, rules: Mapping[RuleKey, RuleEntry]) -> None:
        self.gm = gm
        self.ctx = ctx
        self.rules = rules
        self.modules = dict(gm.named_modules())
        self.env: Dict[fx.Node, Any] = {}
        self.warned: set[str] = set()

    def run(self) -> fx.Graph:
        graph = self.ctx.builder.graph
        for node in self.gm.graph.nodes:
            self.ctx.recorder.node = node
            last = next(reversed(graph.nodes), None)
            self.env[node] = self.visit(node)
            # Every node emitted for ``node`` belongs to its unit: what the measured latency plan
            # times (fx/measure.py), through freeze's copies of the graph.
            unit = unit_of(node, self.modules)
            new = last.next if last is not None else next(iter(graph.nodes), None)
            while new is not None and new.op != "root":
                new.meta.setdefault(UNIT, unit)
                new = new.next
        self.ctx.recorder.node = None
        return graph

    def visit(self, node: fx.Node) -> Any:
        ctx, graph = self.ctx, self.ctx.builder.graph
        if node.op == "placeholder":
            default = node.args[0] if node.args else inspect.Signature.empty
            new = graph.placeholder(node.target, type_expr=node.type, default_value=default)
            new.meta["val"] = node.meta["val"]
            return new
        args = map_values(node.args, lambda v: self.env[v] if isinstance(v, fx.Node) else v)
        kwargs = map_values(node.kwargs, lambda v: self.env[v] if isinstance(v, fx.Node) else v)
        if node.op == "output":
            out = map_values(args[0], lambda v: ctx.merge(v, "model output") if isinstance(v, Octave) else v)
            graph.output(out, type_expr=node.type)
            return None
        if node.op == "get_attr":
            return ctx.copy(node, args, kwargs)
        has_pair = bool(octaves_in((args, kwargs)))
        key = _key(node, self.modules, self.rules)
        entry = self.rules.get(key) if key is not None else None
        kind = ctx.recorder.describe(node)
        if entry is not None and (has_pair or entry.plain):
            try:
                result = entry.rule(ctx, node, args, kwargs)
                if result is not None:
                    return result
                reason = "its rule returned nothing"
            except Decline as d:
                reason = f"{kind} rule declined: {d}"
            except EmitError as e:
                raise ConversionError(
                    f"the octave rule {entry.rule.__name__} failed on `{node.format_node()}`: {e}.",
                    hint="the rule should raise octify.rules.Decline for inputs it cannot handle; "
                    "override it with rules={...: None} to merge there instead."
                ) from e
        elif flattens_to_vectors(node):
            reason = f"{kind} flattens each sample to a vector (a classifier's head): merged, as expected"
        else:
            reason = f"no octave rule for {kind}"
        if not has_pair:
            return ctx.copy(node, args, kwargs)
        if entry is None and kind not in self.warned and not flattens_to_vectors(node):
            self.warned.add(kind)
            warn_user(f"octify: {kind} has no octave rule; the pair is merged back to a plain tensor before it")
        args, kwargs = map_values((args, kwargs), lambda v: ctx.merge(v, reason) if isinstance(v, Octave) else v)
        return ctx.copy(node, args, kwargs)


def rewrite(
    gm: fx.GraphModule, ctx: ConversionContext, rules: Mapping[RuleKey, RuleEntry], values: Optional[Dict[fx.Node, Any]] = None
) -> fx.Graph:
    """The new graph for ``gm``; its modules are installed in ``ctx.builder.root`` as it goes.
    ``values``, when given, receives each traced node's value in the new graph (a node or a pair)."""
    walk = _Walk(gm, ctx, rules)
    graph = walk.run()
    if values is not None:
        values.update(walk.env)
    return graph
