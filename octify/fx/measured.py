"""``policy="latency"``: a plan measured on this machine, never slower than the plain model.

1. The original is frozen plain, and converted (default policy) and frozen at each alpha of
   ``LATENCY_ALPHAS``; each unit's time is measured in place in every form, and the splits and
   merges between units alone (``measure.py``; cached).
2. Each unit's fidelity cost at each alpha: the share of its output's energy lost when the
   channels that alpha sends low go an octave down and back (nearest-upsampled average pooling),
   on the first calibration batch, else on the example inputs.
3. Dynamic programming over the units in order (``choose.py``) gives the trade-off curve; the
   budget picks a plan on it (the fastest when none is given).
4. The plan is converted (``alpha_for`` for its octave units' convs, ``exclude`` for its plain
   ones), frozen, and timed against the frozen plain model, alternated. If it is not faster, the
   model stays plain, and the record says so.

Where the forms cannot be timed (inputs on the meta device, a model that does not freeze), the
static rules of ``latency.py`` plan instead (``policy="latency-rules"``), and the record says why.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.fx as fx
from torch import nn

from ..nn._resample import downsample, upsample_to
from ..nn.octconv import OctConvNd
from ..nn.partition import Partition
from ..record import find_record
from ..utils.runtime import device_of, module_values, sync
from .choose import Unit, pick, tradeoff
from .freeze import freeze
from .latency import UNIT
from .measure import Progress, Steps, cache_key, default_cache_dir, load_cached, store, time_units, timing_steps

__all__ = ["measured_plan", "LATENCY_ALPHAS", "LATENCY_RUNS"]

LATENCY_ALPHAS = (0.25, 0.5, 0.75)
LATENCY_RUNS = 10  # alternated forwards per form: the median of 10 is steady to a few percent here
VERIFY_PAIRS = 10

Build = Callable[[Any, Any], fx.GraphModule]  # (options, calibration) -> converted model


def _fidelity_costs(model: nn.Module, units: Sequence[str], batch: Sequence[Any], octave: int) -> dict:
    """{unit: {alpha: share of the unit output's energy lost an octave down}} on one batch."""
    modules = dict(model.named_modules())
    seen = module_values(model, {u: modules[u] for u in units if u in modules}, batch)
    costs: dict = {}
    for u in units:
        y = seen.get(u)
        if not isinstance(y, torch.Tensor) or y.dim() != 4 or min(y.shape[2:]) < octave:
            costs[u] = {}
            continue
        y = y.float()
        total = float((y ** 2).sum()) or 1.0
        costs[u] = {}
        for a in LATENCY_ALPHAS:
            low = list(Partition.split(y.shape[1], a).low)
            yl = y[:, low]
            back = upsample_to(downsample(yl, octave, 2), list(yl.shape[2:]))
            costs[u][a] = float(((yl - back) ** 2).sum()) / total
    return costs


def _ratio(a: nn.Module, b: nn.Module, inputs: Sequence[Any], pairs: int) -> float:
    """Median over alternated pairs of time(a) / time(b)."""
    ratios = []
    device = device_of(b)
    with torch.inference_mode():
        for i in range(pairs + 2):
            times = []
            for m in (a, b):
                sync(device)
                t0 = time.perf_counter()
                m(*inputs)
                sync(device)
                times.append(time.perf_counter() - t0)
            if i >= 2:
                ratios.append(times[0] / times[1])
    return statistics.median(ratios)


def measured_plan(
    model: nn.Module, args: tuple, opts: Any, build: Build, calibration: Any, latency_budget: Optional[float],
    fidelity_budget: Optional[float], cache: Any, progress: Optional[Progress] = None,
) -> fx.GraphModule:
    """The converted model of the measured plan (see the module docstring), its record's
    ``latency_plan`` saying what was measured and chosen. ``progress(text, done, total)`` is
    called as it advances."""
    started = time.perf_counter()
    # converting at each alpha, freezing, timing, the fidelity costs, converting and timing the plan
    steps = Steps(progress, len(LATENCY_ALPHAS) + 1 + timing_steps(LATENCY_RUNS) + 1 + 2)
    opts = dataclasses.replace(opts, policy="default", latency_budget=None, fidelity_budget=None)
    reference = copy.deepcopy(model).eval()
    converted, variants = {}, {}
    for a in LATENCY_ALPHAS:
        steps.start(f"converting at alpha {a:g}")
        converted[a] = build(dataclasses.replace(opts, alpha=a, verify=False), None)
        steps.tick()
    try:
        steps.start("freezing the plain and octave forms")
        plain = freeze(reference, example_inputs=args)
        for a in LATENCY_ALPHAS:
            variants[a] = freeze(copy.deepcopy(converted[a]).eval(), example_inputs=args)
            with torch.inference_mode():
                variants[a](*args)
    except Exception as exc:  # noqa: BLE001 -- whatever keeps the forms from running here: the static rules, said
        return _static(build, opts, calibration, f"the forms could not be frozen and timed here ({type(exc).__name__}: {exc})")
    taps = find_record(converted[0.5]).taps
    shapes = {u: t["shape"] for u, t in taps.items()}
    key = cache_key(plain, args, {"alphas": LATENCY_ALPHAS, "octave": opts.octave, "stride_mode": opts.stride_mode,
                                  "min_size": opts.min_size, "exclude": list(opts.exclude), "runs": LATENCY_RUNS})
    path = None if cache is False or cache is None else (default_cache_dir() if cache is True else Path(cache)) / f"{key}.json"
    steps.tick()
    timings = load_cached(path) if path is not None else None
    if timings is None:
        timings = time_units(plain, variants, args, opts.octave, LATENCY_RUNS, shapes, steps)
        if path is not None:
            store(path, timings)
    else:
        steps.start("timings from the cache")
        steps.tick(timing_steps(LATENCY_RUNS))
    steps.start("the fidelity cost of each unit")
    batch = args
    if calibration is not None:  # a batch of it (a Dataset's first sample, as a batch of one)
        first = next(iter(calibration))
        first = first[0] if isinstance(first, (tuple, list)) else first
        if isinstance(first, torch.Tensor) and args and isinstance(args[0], torch.Tensor) and first.dim() == args[0].dim() - 1:
            first = first.unsqueeze(0)
        batch = (first,)
    costs = _fidelity_costs(reference, timings.units, batch, opts.octave)
    steps.tick()
    units = [Unit(u, timings.ms[u], costs.get(u, {})) for u in timings.units]
    curve = tradeoff(units, timings.transition)
    plain_ms = sum(u.ms[0.0] for u in units)
    chosen, why = pick(curve, plain_ms, latency_budget, fidelity_budget)
    plan = dict(zip(timings.units, chosen.alphas))
    steps.start("converting the chosen plan")
    by_unit = _convs_by_unit(converted[0.5])
    result = (build if any(plan.values()) else _quietly(build))(_plan_options(opts, plan, converted, by_unit), calibration)
    steps.tick()
    verified = None
    if any(plan.values()):
        steps.start("timing it against the plain model")
        verified = _ratio(freeze(copy.deepcopy(result).eval(), example_inputs=args), plain, args, VERIFY_PAIRS)
        if verified > 1.0:
            why = f"the chosen plan measured {verified:.2f}x the plain model: kept plain"
            plan = {u: 0.0 for u in plan}
            result = _quietly(build)(_plan_options(opts, plan, converted, by_unit), calibration)
    steps.finish()
    record = find_record(result)
    record.latency_plan = {
        "source": timings.source, "units": [
            {"unit": u.name, "ms": {repr(a): t for a, t in u.ms.items()}, "cost": {repr(a): c for a, c in u.cost.items()},
             "alpha": plan[u.name]} for u in units],
        "plain_ms": plain_ms, "predicted_ms": chosen.ms if any(plan.values()) else plain_ms, "verified_ratio": verified,
        "why": why, "latency_budget": latency_budget, "fidelity_budget": fidelity_budget,
        "curve": [{"ms": p.ms, "cost": p.cost, "octave_units": sum(1 for a in p.alphas if a)} for p in curve],
        "threads": torch.get_num_threads(), "inputs": [list(x.shape) for x in args if isinstance(x, torch.Tensor)],
        "seconds": time.perf_counter() - started,
    }
    units_of = {n: u for u, names in by_unit.items() for n in names}
    reason = f"latency policy (measured): {why}" if not any(plan.values()) else "latency policy (measured): plain is faster here"
    record.convs = [
        dataclasses.replace(c, plain_reason=reason) if plan.get(units_of.get(c.name), 1.0) == 0.0 and not c.converted else c
        for c in record.convs
    ]
    return result


def _convs_by_unit(gm: fx.GraphModule) -> dict:
    """{unit: [conv names]} of a converted model, from the unit tags the rewrite leaves."""
    modules = dict(gm.named_modules())
    out: dict = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(str(node.target)), (OctConvNd, nn.modules.conv._ConvNd)):
            if node.meta.get(UNIT) is not None:
                out.setdefault(node.meta[UNIT], []).append(str(node.target))
    return out


def _plan_options(opts: Any, plan: dict, converted: dict, by_unit: dict) -> Any:
    """Convert options for ``plan``: its octave units' convs at their alpha (those the default
    policy made octave at it), its plain units' convs excluded."""
    alpha_for: dict = {}
    exclude = list(opts.exclude)
    for unit, a in plan.items():
        names = by_unit.get(unit, [])
        if a == 0.0:
            exclude += names
            continue
        # The convs the default policy ended at alpha 0 there (a small map, the last layer) stay so.
        octave_there = {c.name for c in find_record(converted[a]).convs if c.alpha_out > 0.0}
        alpha_for.update({n: (a if n in octave_there else 0.0) for n in names})
    return dataclasses.replace(opts, alpha_for=alpha_for or None, exclude=tuple(exclude))


def _quietly(build: Build) -> Build:
    """``build`` without the "none of the convs was converted" warning: here that is the plan."""
    def run(opts: Any, data: Any) -> fx.GraphModule:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="octify: none of the")
            return build(opts, data)
    return run


def _static(build: Build, opts: Any, calibration: Any, why: str) -> fx.GraphModule:
    result = build(dataclasses.replace(opts, policy="latency-rules"), calibration)
    find_record(result).latency_plan = {"source": "static rules (policy='latency-rules')", "why": why}
    return result
