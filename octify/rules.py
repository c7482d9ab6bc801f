"""The registry of octave rules: how each op treats an octave (high, low) pair.

A rule is keyed by a module type, a function, a tensor-method name (a ``str``), or a module
class's qualified name (a ``str`` with a dot, ``"timm.layers.norm_act.BatchNormAct2d"``: a
library octify does not import). The
conversion pass calls it as ``rule(ctx, node, args, kwargs)`` for every node of that kind that
receives a pair (or for every node at all, when registered with ``plain=True``): ``node`` is
the node of the traced original, ``args``/``kwargs`` its arguments with every value already
rewritten (a plain ``fx.Node``, an :class:`Octave` pair, or a constant), and ``ctx`` the
:class:`RuleContext`, the only thing a rule programs against. The rule emits replacement nodes
through ``ctx`` and returns the value of the node: an :class:`Octave` pair or a plain
``fx.Node``. A rule that cannot handle its input raises :class:`Decline`, and the pass then
merges the pairs back to plain tensors in front of the op and records why. An op with no rule
is never guessed at: it gets the same merge.

Every rule must be exact when the octave is 1 (no resampling): the converted model then
reproduces the original's outputs, which is the test every rule is held to.

>>> import torch, octify
>>> from octify.rules import register_rule, per_branch
>>> class Swish(torch.nn.Module):
...     def forward(self, x):
...         return x * torch.sigmoid(x)
>>> rules = {Swish: per_branch}  # per call: merged over the registry, which stays unchanged
>>> conv = lambda: torch.nn.Conv2d(8, 8, 3, padding=1)
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), conv(), Swish(), conv(), torch.nn.AdaptiveAvgPool2d(1))
>>> x = torch.randn(1, 3, 32, 32)
>>> rec = octify.record_of(octify.convert(net, example_inputs=x, rules=rules))
>>> rec.count("merge"), rec.threaded["Swish"]     # Swish kept whole, run on each branch
(0, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Protocol, Union

import torch.fx as fx
from torch import nn

from .nn.partition import Partition

__all__ = [
    "Octave", "Decline", "EmitError", "RuleContext", "RuleEntry", "Rule", "RuleKey", "register_rule", "registry", "per_branch", "passthrough",
]

RuleKey = Union[type, Callable[..., Any], str]


@dataclass(frozen=True)
class Octave:
    """A value of the rewritten graph that is an octave pair: two nodes and their channel partition."""

    high: fx.Node
    low: fx.Node
    partition: Partition


class Decline(Exception):
    """Raised by a rule that cannot handle this input; the message says why (it goes in the record)."""


class EmitError(Exception):
    """``RuleContext.emit`` could not evaluate the node it was asked to add (it is not added)."""


class RuleContext(Protocol):
    """What a rule may do: the whole interface between the rules and the pass.

    Every node a rule emits is evaluated at once on fake tensors (``node.meta["val"]``), so a
    rule can look at shapes (the low grid, channel counts) while it rewrites. Merges, splits
    and aligns are recorded with the reason given; each pair is merged at most once.
    """

    octave: int  # resolution ratio between the branches of every pair in this conversion
    transfer_weights: bool  # False: new layers keep their fresh random initialisation

    # -- emitting nodes ----------------------------------------------------------------------
    def emit(self, op: str, target: Any, args: tuple = (), kwargs: Optional[dict] = None) -> fx.Node:
        """Append a node (``op`` as in ``fx.Graph.create_node``) and evaluate it; raises
        ``EmitError`` when it fails on the fake values (a rule turns that into ``Decline``)."""
        ...

    def getitem(self, node: fx.Node, i: int) -> fx.Node:
        """``node[i]``: one element of a tuple-valued node."""
        ...

    def copy(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        """Re-emit the original ``node`` with new arguments (the op unchanged)."""
        ...

    def erase(self, *nodes: fx.Node) -> None:
        """Remove nodes this rule emitted and no longer wants (last emitted first)."""
        ...

    # -- modules -----------------------------------------------------------------------------
    def original_module(self, target: str) -> nn.Module:
        """The module of the traced original at a ``call_module`` target (never modified)."""
        ...

    def install(self, node: fx.Node, module: nn.Module) -> str:
        """Put ``module`` in the converted model in place of ``node``'s module, under its name
        (a second call site of a shared module gets a name of its own); returns the name."""
        ...

    def add_module(self, prefix: str, module: nn.Module) -> str:
        """Add a helper module under a fresh ``octify_<prefix>_<n>`` name; returns the name."""
        ...

    def call_pair_module(self, name: str, x: Any, partition: Partition) -> Any:
        """Call module ``name`` on ``x`` (a node or an Octave); a tuple result comes back as an
        :class:`Octave` of ``partition``."""
        ...

    # -- pairs -------------------------------------------------------------------------------
    def merge(self, value: "Octave", reason: str) -> fx.Node:
        """The plain tensor of a pair (recorded as a merge, with ``reason``)."""
        ...

    def split(self, node: fx.Node, partition: Partition, reason: str) -> "Octave":
        """A plain (N, C, H, W) tensor as a pair; a per-channel (N, C, 1, 1) one is only sliced."""
        ...

    def align(self, value: "Octave", target: Partition, reason: str) -> "Octave":
        """The pair moved to partition ``target`` (only the channels that change branch move)."""
        ...

    def per_branch(self, node: fx.Node, args: tuple, kwargs: dict) -> "Octave":
        """The node's op run on the high and on the low branch alike; declines when the
        result leaves the octave grid or changes the channel count."""
        ...

    def per_branch_with(
        self, node: fx.Node, x: "Octave", emit: Callable[[fx.Node], fx.Node],
        emit_low: Optional[Callable[[fx.Node], fx.Node]] = None,
    ) -> "Octave":
        """``emit`` run on the high branch of ``x`` and ``emit_low`` (default: ``emit``) on the low
        one, each emitting one node; declines when the low result leaves the octave grid. The
        partition is ``x``'s: a rule that moves channels builds its Octave from these nodes."""
        ...

    def low_fits(self, high: fx.Node, low: fx.Node) -> Optional[str]:
        """None when ``low`` lies on the octave grid of ``high``, else why not."""
        ...

    # -- the plan and the record ---------------------------------------------------------------
    def plan_of(self, node: fx.Node) -> Any:
        """The plan of a conv node (``octify.fx.plan.ConvPlan``: alpha_out, reason, keep_plain,
        split_groups, stride_mode)."""
        ...

    def describe(self, node: fx.Node) -> str:
        """The op of an original node as a person names it (``Conv2d``, ``F.relu``, ``.mean()``)."""
        ...

    def threaded(self, node: fx.Node) -> None:
        """Count ``node`` as run per branch, in the record."""
        ...

    def record_conv(self, node: fx.Node, alpha_in: float, alpha_out: float, plain_reason: Optional[str]) -> None:
        """Record what became of a conv node (``plain_reason`` None: converted)."""
        ...


Rule = Callable[[RuleContext, fx.Node, tuple, dict], Any]


@dataclass(frozen=True)
class RuleEntry:
    """A rule as the registry holds it."""

    rule: Rule
    plain: bool  # call the rule even when no pair arrives


_REGISTRY: Dict[RuleKey, RuleEntry] = {}


def register_rule(*keys: RuleKey, plain: bool = False) -> Callable[[Rule], Rule]:
    """Decorator: register ``rule`` for ``keys`` (module types, functions or method names).

    A key can be registered once; a second registration is an error (pass ``rules=`` to
    ``convert`` to override per call).
    """
    _builtins()  # first, so that a key the built-ins hold is refused here, not when they load

    def deco(rule: Rule) -> Rule:
        for key in keys:
            _check_key(key)
            if key in _REGISTRY:
                raise ValueError(f"an octave rule for {_key_name(key)} is already registered ({_REGISTRY[key].rule.__name__})")
            _REGISTRY[key] = RuleEntry(rule, plain)
        return rule

    return deco


def _builtins() -> Dict[RuleKey, RuleEntry]:
    """The registry with the built-in rules in it: they register themselves when their package
    is imported, which happens here, on first use, wherever the registry is read from."""
    import importlib

    importlib.import_module("octify.fx.builtin_rules")  # a no-op once imported
    return _REGISTRY


def _check_key(key: object) -> None:
    if not (isinstance(key, str) or callable(key)):
        raise TypeError(f"a rule key must be a module type, a function or a method name, found {key!r}")
    if isinstance(key, type) and not issubclass(key, nn.Module):
        raise TypeError(f"a rule key that is a class must be an nn.Module subclass, found {key.__name__}")


def class_name(cls: type) -> str:
    """The key of a module class given by name: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _key_name(key: RuleKey) -> str:
    if isinstance(key, str):
        return f"class {key}" if "." in key else f"method .{key}()"
    return getattr(key, "__qualname__", None) or repr(key)


def registry(overrides: Optional[Mapping[RuleKey, Rule]] = None) -> Dict[RuleKey, RuleEntry]:
    """The built-in rules with ``overrides`` merged over them; the registry itself is not mutated.

    An override value of ``None`` removes the built-in rule for that key (its op then merges).
    """
    merged = dict(_builtins())
    for key, rule in (overrides or {}).items():
        _check_key(key)
        if rule is None:
            merged.pop(key, None)
        elif isinstance(rule, RuleEntry):
            merged[key] = rule
        elif callable(rule):
            merged[key] = RuleEntry(rule, key in _REGISTRY and _REGISTRY[key].plain)
        else:
            raise TypeError(f"the rule for {_key_name(key)} must be callable, found {rule!r}")
    return merged


def per_branch(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Octave:
    """Run the op on each branch alone (elementwise ops, pooling, dropout): the common rule."""
    return ctx.per_branch(node, args, kwargs)


def passthrough(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """The op is the identity: the pair flows through untouched."""
    return args[0]
