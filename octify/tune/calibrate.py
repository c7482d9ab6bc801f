"""Calibration on the user's data: how much each conv output channel loses one octave down
(measured on the original), batch-norm statistics corrected for the drift conversion causes,
and the choice, measured on the same data, between the measured split and the default one."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import OptionTypeError
from ..fx.assign import assign_low_channels
from ..fx.plan import ConvPlan
from ..fx.shape_prop import eval_mode
from ..nn import OctBatchNorm2d
from ..record import record_of
from .data import batches_of, to_device
from .fidelity import fidelity_of_each

__all__ = ["check_reiterable", "octave_losses", "reestimate_bn", "correct_bn", "calibrate"]

WHO = "octify.convert: calibration"


def check_reiterable(data: Any, who: str) -> None:
    """Calibration reads the data twice (original, then converted): a one-shot iterator cannot."""
    try:
        once = iter(data) is data
    except TypeError:
        raise OptionTypeError(f"{who}: expected an iterable of batches (a DataLoader, a list of Tensors), found {type(data).__name__}") from None
    if once:
        raise OptionTypeError(
            f"{who}: expected data that can be iterated more than once, found a one-shot {type(data).__name__}. "
            "Hint: pass a list of batches or a DataLoader."
        )


def _octave_error(x: Tensor, octave: int) -> tuple[Tensor, Tensor]:
    """Per channel: squared error of x against up(down(x)) (average pool, nearest upsampling, as
    the octave layers resample) and x's centred energy, summed over batch and pixels."""
    h, w = (x.shape[-2] // octave) * octave, (x.shape[-1] // octave) * octave
    x = x[..., :h, :w].double()
    if h == 0 or w == 0:
        zero = x.new_zeros(x.shape[1])
        return zero, zero
    back = F.interpolate(F.avg_pool2d(x, octave), scale_factor=octave, mode="nearest")
    err = (x - back).square().sum((0, 2, 3))
    centred = (x - x.mean((0, 2, 3), keepdim=True)).square().sum((0, 2, 3))
    return err, centred


def octave_losses(model: nn.Module, names: Sequence[str], data: Iterable[Any], octave: int, who: str) -> Dict[str, Tensor]:
    """``{conv name: per-channel loss}``: the share of each output channel's variation that one
    octave down and back up loses, over ``data``, ``model`` in eval mode.

    Centred energy (not raw): a batch norm after the conv removes the channel's mean, so a large
    constant offset would otherwise hide high-frequency content the network then amplifies."""
    sums: Dict[str, list] = {}

    def hook(name: str):
        def record(mod: nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, Tensor) and out.dim() == 4:
                err, energy = _octave_error(out.detach(), octave)
                acc = sums.setdefault(name, [0, 0])
                acc[0], acc[1] = acc[0] + err, acc[1] + energy
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad(), eval_mode(model):
            for x, _ in batches_of(data, who):
                model(to_device(x, model))
    finally:
        for h in handles:
            h.remove()
    return {n: (err / energy.clamp_min(1e-30)).float().cpu() for n, (err, energy) in sums.items()}


def reestimate_bn(model: nn.Module, data: Iterable[Any], who: str, bns: Optional[Sequence[nn.Module]] = None) -> int:
    """Reset the running statistics of ``bns`` (default: every batch norm of ``model``) and
    recompute them as the exact average over ``data`` (momentum None), the rest of the model in
    eval mode; returns how many batch norms."""
    if bns is None:
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    with torch.no_grad(), eval_mode(model):
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.training = True
        try:
            for x, _ in batches_of(data, who):
                model(to_device(x, model))
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
    return len(bns)


def _counterparts(converted: nn.Module, original: nn.Module) -> List[Tuple[_BatchNorm, _BatchNorm, List[int]]]:
    """(converted batch norm, the original's, the original channels it holds) for every batch norm
    of ``converted`` (octave ones per branch) whose original keeps its qualified name (an
    OctNormAct's ``bn`` stands for the norm-act module it replaces)."""
    ref = dict(original.named_modules())
    octave_norms = tuple(p + "." for p, o in converted.named_modules() if isinstance(o, OctBatchNorm2d) and p)
    pairs = []
    for name, m in converted.named_modules():
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        orig = next((ref[n] for n in (name, parent) if isinstance(ref.get(n), _BatchNorm)), None)
        if orig is None or not orig.track_running_stats:
            continue
        if isinstance(m, OctBatchNorm2d):
            for sub, idx in ((m.bn_h, m.partition.high), (m.bn_l, m.partition.low)):
                if sub is not None and sub.track_running_stats:
                    pairs.append((sub, orig, list(idx)))
        elif isinstance(m, _BatchNorm) and m.track_running_stats and m.num_features == orig.num_features:
            if not name.startswith(octave_norms):  # an OctBatchNorm2d's branches are taken above
                pairs.append((m, orig, list(range(m.num_features))))
    return pairs


def correct_bn(reference: nn.Module, converted: nn.Module, data: Iterable[Any], who: str, *, reestimate_reference: bool = True) -> int:
    """Shift the converted model's batch-norm statistics by the drift the conversion caused.

    Both models' batch norms are re-estimated on ``data`` alike; each converted statistic becomes
    the original's running value plus the difference (mean) or times the ratio (variance) of the
    two estimates. Data like the training data gives the plain re-estimate; data unlike it (or an
    original whose statistics are not those of its data) still changes only what conversion
    changed, so with ``octave=1`` the statistics are the original's exactly. ``reference`` is a
    copy of the original taken before conversion (its statistics are re-estimated here, unless
    ``reestimate_reference=False`` says an earlier call on a conversion of the same plan did).
    Returns how many of the original's batch norms were corrected."""
    ref = reference
    pairs = _counterparts(converted, ref)
    if not pairs:
        return 0
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m, _, _ in pairs]
    if reestimate_reference:
        reestimate_bn(ref, data, who, list({id(o): o for _, o, _ in pairs}.values()))
    reestimate_bn(converted, data, who, [m for m, _, _ in pairs])
    with torch.no_grad():
        for (m, orig, idx), (mean0, var0, tracked) in zip(pairs, saved):
            ref_var = orig.running_var[idx]
            ratio = torch.where(ref_var > m.eps, m.running_var / ref_var.clamp_min(m.eps), torch.ones_like(ref_var))
            m.running_mean.copy_(mean0 + m.running_mean - orig.running_mean[idx])
            m.running_var.copy_(var0 * ratio)
            m.num_batches_tracked.copy_(tracked)
    return len({id(o) for _, o, _ in pairs})  # the original's batch norms (an octave one holds two)


Build = Callable[[nn.Module, Mapping[fx.Node, ConvPlan]], fx.GraphModule]


def calibrate(
    model: nn.Module, gm: fx.GraphModule, plans: Mapping[fx.Node, ConvPlan], data: Iterable[Any], octave: int,
    split: str, build: Build,
) -> fx.GraphModule:
    """Stage 3b and the conversions it compares: ``build(copy of model, plans)`` runs stages 4-7.

    The measured split (each layout group's low channels chosen by :func:`octave_losses`) is a
    heuristic, and so is the batch-norm correction: on some trained networks the default split
    reproduces the original better. So with ``split="best"`` three conversions are compared on
    ``data`` against the original's outputs -- the measured split and the default one, both with
    corrected batch norms, and the plain conversion (no calibration at all) -- and the one with
    the lowest relative error is returned (on a tie, the simpler: uncalibrated, then default):
    calibration never leaves a model worse on the data it was given. ``"measured"`` and
    ``"default"`` take that split, batch norms corrected, without comparing. The record's
    ``calibration`` says which was taken and every error compared."""
    candidates: Dict[str, Tuple[Mapping[fx.Node, ConvPlan], bool]] = {}  # name -> (plans, correct batch norms)
    kept_default: Dict[str, str] = {}
    if split in ("best", "measured"):
        measured = {n: dataclasses.replace(p) for n, p in plans.items()}
        names = sorted({str(n.target) for n, p in plans.items() if p.alpha_out > 0.0 and not p.keep_plain})
        kept_default = assign_low_channels(gm, measured, octave_losses(model, names, data, octave, WHO))
        if split == "measured" or any(p.low is not None for p in measured.values()):
            candidates["measured"] = (measured, True)
    if split in ("best", "default"):
        candidates["default"] = (plans, True)
    if split == "best":
        candidates["uncalibrated"] = (plans, False)
    reference = copy.deepcopy(model)  # as it is now; its batch-norm statistics are re-estimated once
    built: Dict[str, fx.GraphModule] = {}
    corrected: Dict[str, int] = {}
    for name, (candidate, correct) in candidates.items():
        built[name] = build(copy.deepcopy(model), candidate)
        corrected[name] = correct_bn(reference, built[name], data, WHO, reestimate_reference=not corrected) if correct else 0
        if not correct and not any(corrected.values()):
            del built[name]  # no batch norm to correct: the same model as "default"
    errors: Dict[str, float] = {}
    samples = None
    if len(built) > 1:
        results = fidelity_of_each(model, list(built.values()), data, WHO)
        errors = {name: r["rel_error"] for name, r in zip(built, results)}
        samples = results[0]["samples"]
        chosen = min(reversed(list(built)), key=lambda k: errors[k])  # reversed: the simpler wins a tie
    else:
        (chosen,) = built
    out = built[chosen]
    chosen_plans = candidates[chosen][0]
    record_of(out).calibration = {
        "chosen": chosen,
        "assigned": sorted({str(n.target) for n, p in chosen_plans.items() if p.low is not None}),
        "kept_default": kept_default if chosen == "measured" else {},
        "rel_error": errors,
        "batch_norms_corrected": corrected[chosen],
        "samples": samples,  # the errors were measured on this many (None: nothing was compared)
    }
    return out
