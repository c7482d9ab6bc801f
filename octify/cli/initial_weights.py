"""Whether a model built from its code holds the random weights its constructor drew.

A model file's class or factory usually initialises its weights at random; some load trained ones
themselves. Distilling towards random weights, or exporting them, is a mistake the user should
hear about -- so the builder is called once more under another seed: weights that change with the
seed were drawn at random, weights that do not were set by the code (loaded, or fixed).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["draws_its_weights"]


def draws_its_weights(build: Callable[..., Any], kwargs: dict, model: nn.Module) -> bool:
    """True when ``build(**kwargs)`` under another seed gives ``model`` other floating-point
    weights; the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.seed()  # a seed of its own, whatever the caller seeded the first build with
        try:
            again = build(**kwargs)
        except Exception:  # it built once; whatever stops it now, the weights are unknown: say nothing
            return False
    if not isinstance(again, nn.Module):
        return False
    a, b = model.state_dict(), again.state_dict()
    return any(k in b and a[k].is_floating_point() and a[k].shape == b[k].shape and not torch.equal(a[k], b[k]) for k in a)
