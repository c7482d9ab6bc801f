"""Rules for ops that act on each channel alone: elementwise ops, dropout, identity, stochastic depth."""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from ...nn import SharedStochasticDepth
from ...rules import RuleContext, passthrough, per_branch, register_rule
from ..ops import ELEMENTWISE_FUNCTIONS, ELEMENTWISE_METHODS, ELEMENTWISE_MODULES

register_rule(*ELEMENTWISE_MODULES, *ELEMENTWISE_FUNCTIONS, *ELEMENTWISE_METHODS)(per_branch)
register_rule(nn.Identity)(passthrough)


def _stochastic_depth(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """torchvision StochasticDepth: one drop decision per sample shared by both branches."""
    x = args[0]
    m = ctx.original_module(node.target)
    name = ctx.install(node, SharedStochasticDepth(m.p, m.mode))
    ctx.threaded(node)
    return ctx.call_pair_module(name, x, x.partition)


try:  # torchvision is a dependency, but the rule must not make octify's import depend on its ops
    from torchvision.ops import StochasticDepth

    register_rule(StochasticDepth)(_stochastic_depth)
except ImportError:  # pragma: no cover
    pass
