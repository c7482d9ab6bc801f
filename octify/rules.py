"""The registry of octave rules: how each op treats an octave (high, low) pair.

A rule is keyed by a module type, a function, or a tensor-method name (a ``str``). The
conversion pass calls it for every node of that kind that receives a pair (or for every node
at all, when registered with ``plain=True``); it emits replacement nodes and returns the value
of the node: an :class:`Octave` pair or a plain ``fx.Node``. A rule that cannot handle its
input raises :class:`Decline`, and the pass then merges the pairs back to plain tensors in
front of the op and records why. An op with no rule is never guessed at: it gets the same
merge.

Every rule must be exact when the octave is 1 (no resampling): the converted model then
reproduces the original's outputs, which is the test every rule is held to.

>>> import torch, octify
>>> from octify.rules import register_rule, per_branch
>>> class Swish(torch.nn.Module):
...     def forward(self, x):
...         return x * torch.sigmoid(x)
>>> rules = {Swish: per_branch}  # per call: merged over the registry, which stays unchanged
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3), Swish(), torch.nn.Conv2d(8, 4, 3))
>>> rec = octify.record_of(octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), rules=rules))
>>> rec.count("merge")
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Union

import torch.fx as fx
from torch import nn

from .nn.partition import Partition

if TYPE_CHECKING:  # pragma: no cover
    from ._rewrite import Rewriter

__all__ = ["Octave", "Decline", "Rule", "RuleKey", "register_rule", "registry", "per_branch", "passthrough"]

RuleKey = Union[type, Callable[..., Any], str]
Rule = Callable[["Rewriter", fx.Node, tuple, dict], Any]


@dataclass(frozen=True)
class Octave:
    """A value of the rewritten graph that is an octave pair: two nodes and their channel partition."""

    high: fx.Node
    low: fx.Node
    partition: Partition


class Decline(Exception):
    """Raised by a rule that cannot handle this input; the message says why (it goes in the record)."""


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    plain: bool  # call the rule even when no pair arrives


_REGISTRY: Dict[RuleKey, _Entry] = {}


def register_rule(*keys: RuleKey, plain: bool = False) -> Callable[[Rule], Rule]:
    """Decorator: register ``rule`` for ``keys`` (module types, functions or method names).

    A key can be registered once; a second registration is an error (pass ``rules=`` to
    ``convert`` to override per call).
    """

    def deco(rule: Rule) -> Rule:
        for key in keys:
            _check_key(key)
            if key in _REGISTRY:
                raise ValueError(f"an octave rule for {_key_name(key)} is already registered ({_REGISTRY[key].rule.__name__})")
            _REGISTRY[key] = _Entry(rule, plain)
        return rule

    return deco


def _check_key(key: object) -> None:
    if not (isinstance(key, str) or callable(key)):
        raise TypeError(f"a rule key must be a module type, a function or a method name, found {key!r}")
    if isinstance(key, type) and not issubclass(key, nn.Module):
        raise TypeError(f"a rule key that is a class must be an nn.Module subclass, found {key.__name__}")


def _key_name(key: RuleKey) -> str:
    if isinstance(key, str):
        return f"method .{key}()"
    return getattr(key, "__qualname__", None) or repr(key)


def registry(overrides: Optional[Mapping[RuleKey, Rule]] = None) -> Dict[RuleKey, _Entry]:
    """The built-in rules with ``overrides`` merged over them; the registry itself is not mutated.

    An override value of ``None`` removes the built-in rule for that key (its op then merges).
    """
    merged = dict(_REGISTRY)
    for key, rule in (overrides or {}).items():
        _check_key(key)
        if rule is None:
            merged.pop(key, None)
        elif isinstance(rule, _Entry):
            merged[key] = rule
        elif callable(rule):
            merged[key] = _Entry(rule, key in _REGISTRY and _REGISTRY[key].plain)
        else:
            raise TypeError(f"the rule for {_key_name(key)} must be callable, found {rule!r}")
    return merged


def per_branch(rw: "Rewriter", node: fx.Node, args: tuple, kwargs: dict) -> Octave:
    """Run the op on each branch alone (elementwise ops, pooling, dropout): the common rule."""
    return rw.per_branch(node, args, kwargs)


def passthrough(rw: "Rewriter", node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """The op is the identity: the pair flows through untouched."""
    return args[0]
