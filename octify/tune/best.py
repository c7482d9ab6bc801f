"""Keep the best weights a fine-tuning run has seen, measured on held-out data.

Distillation lowers its loss on the training batches; that is not the same as agreeing more often
with the original on data it has not seen (a weak original and labels pull apart, a learning rate
too high overshoots, a held-out share drifts). So :func:`~octify.tune.distill.finetune` measures
fidelity on held-out data before the first step and every ``eval_every`` steps, keeps a copy of the
weights whenever the measure improves, and ends with the best copy: a run never ends worse, on that
data, than it started.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from ..errors import OptionError
from ..fx.shape_prop import eval_mode
from .data import batches_of, float_outputs, to_device
from .fidelity import FidelityMeter

__all__ = ["BestKeeper", "better", "split_validation"]

WHO = "octify.finetune"
TEACHER_CACHE_BYTES = 256 << 20


def better(measure: str, new: Dict[str, Any], best: Dict[str, Any], start: Dict[str, Any]) -> bool:
    """Whether ``new`` beats ``best`` by ``measure`` (``start``: the measurement before training).

    ``"agreement_floor"`` (what ``"auto"`` means for class scores): the lowest relative error among the
    weights whose agreement is at least the starting one. Agreement on a few hundred held-out
    samples moves in steps of a sample, so the highest one is often a lucky draw; the relative
    error is continuous and tracks the function, and the floor keeps the promise that the
    agreement does not fall. Weights whose outputs are not finite (a diverged run) never win."""
    if not math.isfinite(new["rel_error"]):
        return False
    if measure == "agreement_floor":
        return new["agreement"] >= start["agreement"] and new["rel_error"] < best["rel_error"]
    if measure == "agreement":
        return (new["agreement"], -new["rel_error"]) > (best["agreement"], -best["rel_error"])
    if measure == "cosine":
        return (new["cosine"] or 0.0, -new["rel_error"]) > (best["cosine"] or 0.0, -best["rel_error"])
    if measure == "accuracy":
        return (new["accuracy"], new["agreement"] or 0.0, -new["rel_error"]) > (best["accuracy"], best["agreement"] or 0.0, -best["rel_error"])
    return new["rel_error"] < best["rel_error"]


def _resolve(measure: str, first: Dict[str, Any], preferred: Optional[str] = None) -> str:
    """``"auto"``: the measure the kind of output calls for when the caller knows it
    (``preferred``: ``"agreement_floor"`` for class scores, ``"cosine"`` for an embedding,
    ``"rel_error"`` for maps), else agreement where the outputs have a class dim and the relative
    error otherwise; an explicit measure the data cannot give is refused (before any step is taken)."""
    if measure == "auto":
        if preferred in ("cosine", "rel_error"):
            return preferred
        return "agreement_floor" if first["agreement"] is not None else "rel_error"
    if measure == "agreement" and first["agreement"] is None:
        raise OptionError(
            f"{WHO}: keep_best='agreement' needs class scores (outputs with a class dim 1), found outputs without one. "
            "Hint: keep_best='rel_error'."
        )
    if measure == "accuracy" and "accuracy" not in first:
        raise OptionError(
            f"{WHO}: keep_best='accuracy' needs labels in the validation data, found inputs only. "
            "Hint: give (input, label) batches, or keep_best='agreement'."
        )
    return measure


def split_validation(data: Any, holdout: float, seed: int) -> Tuple[Any, Optional[torch.utils.data.Subset], str]:
    """(training data, held-out data or None, how it was chosen): a seeded ``holdout`` share of a
    map-style Dataset; anything else (a DataLoader, a list of batches) cannot be split by sample."""
    sized = isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__") and not isinstance(data, torch.utils.data.IterableDataset)
    if holdout <= 0.0:
        return data, None, "none (holdout=0)"
    if not sized:
        return data, None, "none (the data is not a Dataset that can be split by sample: pass validation=)"
    n = len(data)
    held = int(round(n * holdout))
    if held < 1 or held >= n:
        return data, None, f"none (holdout {holdout:g} of {n} samples leaves {'nothing held out' if held < 1 else 'nothing to train on'})"
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return torch.utils.data.Subset(data, order[held:]), torch.utils.data.Subset(data, order[:held]), f"{held} of {n} samples held out ({holdout:g})"


class BestKeeper:
    """Measures ``model`` on ``validation`` against ``original`` and keeps the best weights seen."""

    def __init__(self, original: nn.Module, validation: Iterable[Any], measure: str, batch_size: int, preferred: Optional[str] = None) -> None:
        if isinstance(validation, torch.utils.data.Dataset) and hasattr(validation, "__len__"):
            # Its own generator: a DataLoader draws a seed per iteration, which from the global one
            # would shift the run's random draws (dropout) by the number of measurements.
            validation = torch.utils.data.DataLoader(validation, batch_size=batch_size, generator=torch.Generator())
            self._fixed_order = True
        else:
            self._fixed_order = isinstance(validation, (list, tuple))
        self.original, self.validation, self.requested = original, validation, measure
        self.measure = measure
        self.preferred = preferred
        self._teacher: Optional[List[Any]] = None  # the original's outputs per batch, when they can be kept
        self.history: List[Dict[str, Any]] = []
        self.best_step: Optional[int] = None
        self.best: Optional[Dict[str, Any]] = None
        self._state: Optional[Dict[str, torch.Tensor]] = None

    def observe(self, model: nn.Module, step: int) -> Dict[str, Any]:
        """Measure ``model`` after ``step`` steps; keep its weights if they are the best so far."""
        result = self._measure(model)
        if not self.history:
            self.measure = _resolve(self.requested, result, self.preferred)
        entry = {"step": step, **result}
        self.history.append(entry)
        if self.best is None or better(self.measure, entry, self.best, self.history[0]):
            self.best, self.best_step = entry, step
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return entry

    def _measure(self, model: nn.Module) -> Dict[str, Any]:
        """:func:`~octify.fidelity` of ``model``. The original's outputs are computed on the first
        measurement and kept for the others where the batches come in a fixed order (a Dataset,
        a list) and take at most ``TEACHER_CACHE_BYTES``: that halves the cost of each measurement."""
        who = f"{WHO}: validation"
        meter = FidelityMeter(who)
        first = self._teacher is None
        kept: Optional[List[Any]] = [] if first and self._fixed_order else None
        size = 0
        with torch.no_grad(), eval_mode(self.original), eval_mode(model):
            for i, (x, y) in enumerate(batches_of(self.validation, who)):
                if not first:
                    want = self._teacher[i]
                else:
                    want = self.original(to_device(x, self.original))
                    if kept is not None:
                        size += sum(t.numel() * t.element_size() for t in float_outputs(want))
                        if size <= TEACHER_CACHE_BYTES:
                            kept.append(want)
                        else:
                            kept = None
                meter.update(model(to_device(x, model)), want, y)
        if first and kept:
            self._teacher = kept
        return meter.result()

    def restore(self, model: nn.Module) -> None:
        """Load the best weights seen into ``model`` (a no-op when they are its current ones)."""
        if self._state is not None and self.best_step != self.history[-1]["step"]:
            model.load_state_dict(self._state)

    def state_dict(self) -> Dict[str, Any]:
        return {"history": self.history, "best_step": self.best_step, "best": self.best, "state": self._state, "measure": self.measure}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history, self.best_step, self.best = list(state["history"]), state["best_step"], state["best"]
        self._state, self.measure = state["state"], state["measure"]

    def summary(self) -> Dict[str, Any]:
        """What the run's result says: the measure, every measurement, which step's weights were kept."""
        return {
            "measure": self.measure, "best_step": self.best_step, "start": self.history[0] if self.history else None,
            "best": self.best, "end": self.history[-1] if self.history else None, "history": list(self.history),
        }
