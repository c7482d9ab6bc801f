"""How closely a converted model computes its original's function, on the user's data."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..fx.shape_prop import eval_mode
from ..utils.validate import check_module
from .data import batches_of, float_outputs, to_device

__all__ = ["fidelity", "fidelity_of_each", "FidelityMeter"]


class FidelityMeter:
    """Running sums behind :func:`fidelity`, fed one batch at a time."""

    FIELDS = ("sq_diff", "sq_ref", "agree", "predictions", "correct", "ref_correct", "labelled", "samples", "batches", "cos_sum", "cos_count")

    def __init__(self, who: str = "octify.fidelity") -> None:
        self.who = who
        self.totals = dict.fromkeys(self.FIELDS, 0.0)

    def update(self, got: Any, want: Any, labels: Optional[Tensor] = None) -> None:
        got_l, want_l = float_outputs(got), float_outputs(want)
        if len(got_l) != len(want_l) or any(g.shape != w.shape for g, w in zip(got_l, want_l)):
            raise ValueError(
                f"{self.who}: the converted model's outputs do not match the original's: "
                f"{[tuple(g.shape) for g in got_l]} against {[tuple(w.shape) for w in want_l]}"
            )
        t = self.totals
        for g, w in zip(got_l, want_l):
            g, w = g.detach().double(), w.detach().double()
            t["sq_diff"] += (g - w).square().sum().item()
            t["sq_ref"] += w.square().sum().item()
            if w.dim() >= 1 and w.shape[0] > 0:  # each sample's output (flattened) as a vector
                t["cos_sum"] += torch.nn.functional.cosine_similarity(g.reshape(g.shape[0], -1), w.reshape(w.shape[0], -1), dim=1, eps=1e-12).sum().item()
                t["cos_count"] += w.shape[0]
            if w.dim() >= 2 and w.shape[1] > 1:  # class scores on dim 1: per sample, or per pixel
                t["agree"] += (g.argmax(1) == w.argmax(1)).sum().item()
                t["predictions"] += w.argmax(1).numel()
        if labels is not None and want_l and want_l[0].dim() >= 2 and labels.shape == want_l[0].argmax(1).shape:
            labels = labels.to(want_l[0].device)
            t["correct"] += (got_l[0].argmax(1) == labels).sum().item()
            t["ref_correct"] += (want_l[0].argmax(1) == labels).sum().item()
            t["labelled"] += labels.numel()
        t["samples"] += want_l[0].shape[0] if want_l and want_l[0].dim() else 0
        t["batches"] += 1

    def result(self) -> Dict[str, Any]:
        t = self.totals
        out: Dict[str, Any] = {
            "agreement": t["agree"] / t["predictions"] if t["predictions"] else None,
            "rel_error": math.sqrt(t["sq_diff"] / t["sq_ref"]) if t["sq_ref"] else (0.0 if not t["sq_diff"] else math.inf),
            "cosine": t["cos_sum"] / t["cos_count"] if t["cos_count"] else None,
            "samples": int(t["samples"]),
            "batches": int(t["batches"]),
        }
        if t["labelled"]:
            out["accuracy"] = t["correct"] / t["labelled"]
            out["original_accuracy"] = t["ref_correct"] / t["labelled"]
        return out


def fidelity(original: nn.Module, converted: nn.Module, data: Iterable[Any], *, max_batches: Optional[int] = None) -> Dict[str, Any]:
    """How closely ``converted`` reproduces ``original`` on ``data``, both in eval mode.

    ``data`` is an iterable of input batches, or of (input, label) pairs (a DataLoader). Returns
    ``agreement`` (the fraction of top-1 predictions, per sample or per pixel of dense outputs,
    equal to the original's), ``rel_error`` (||converted - original|| / ||original|| over every
    output value), ``cosine`` (the mean over samples, and outputs, of the cosine between each
    sample's outputs, flattened: what matters for an embedding), ``samples`` and ``batches``; with labels also ``accuracy`` and
    ``original_accuracy`` (top-1). Neither model's mode or weights change.

    >>> import torch, octify
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    >>> same = octify.convert(net, octave=1, example_inputs=torch.randn(1, 3, 32, 32))
    >>> r = octify.fidelity(net, same, [torch.randn(8, 3, 32, 32) for _ in range(2)])
    >>> r["agreement"], r["rel_error"] < 1e-5, r["samples"]
    (1.0, True, 16)
    """
    check_module(original, "octify.fidelity: original")
    check_module(converted, "octify.fidelity: converted")
    return fidelity_of_each(original, [converted], data, "octify.fidelity", max_batches)[0]


def fidelity_of_each(
    original: nn.Module, models: Sequence[nn.Module], data: Iterable[Any], who: str, max_batches: Optional[int] = None
) -> List[Dict[str, Any]]:
    """:func:`fidelity` of several models of one original in one pass over ``data`` (the
    original runs once per batch)."""
    meters = [FidelityMeter(who) for _ in models]
    with torch.no_grad(), contextlib.ExitStack() as stack:
        for m in (original, *models):
            stack.enter_context(eval_mode(m))
        for x, y in batches_of(data, who, max_batches):
            want = original(to_device(x, original))
            for meter, m in zip(meters, models):
                meter.update(m(to_device(x, m)), want, y)
    return [meter.result() for meter in meters]
