"""The rule for a model's output rebuilt in its own mapping type (OrderedDict, ModelOutput)."""

from __future__ import annotations

from typing import Any

import torch.fx as fx

from ...nn.functional import rebuild_mapping
from ...rules import Octave, RuleContext, register_rule


@register_rule(rebuild_mapping)
def rebuilt_output(ctx: RuleContext, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    """Its pairs are merged, as at the model's output (outputs are always plain)."""
    args, kwargs = fx.node.map_aggregate((args, kwargs), lambda v: ctx.merge(v, "model output") if isinstance(v, Octave) else v)
    return ctx.copy(node, args, kwargs)
