"""The measured latency plan's timings: each unit's time in the frozen model, plain and at each alpha.

A unit is a block the plan decides as one (``latency.unit_of``: a residual block, an inverted
residual, a dense layer; a top-level conv in a plain stack). The model is frozen plain and
converted-and-frozen once per alpha tried, each node tagged with its unit (the rewrite tags what
it emits; the plain trace has the module stack); a clock call is inserted wherever the unit
changes, the variants run alternated on the example inputs, and each unit's time is the median
over the runs of the time between its clock calls. The transitions between units at different
alphas (a split, a merge, or both) are timed alone on the maps' shapes. On a CPU ops run in
order, so the clock calls time exactly the ops between them; on a GPU each call synchronises.

Timings are cached as JSON (``cache_dir``), keyed by what they depend on: the traced model's
code and parameter shapes, the input shapes, the alphas, octave and stride mode, the thread
count, the device and the machine. Weights do not change timings, so a retrained model reuses them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.fx as fx
from ..nn.partition import Partition
from ..nn.split_merge import OctaveMerge, OctaveSplit
from ..utils.runtime import device_of, sync
from .latency import UNIT, unit_of

__all__ = ["Timings", "time_units", "cache_key", "default_cache_dir", "load_cached", "store"]

_MARKS: list = []


def _mark(unit: Optional[str], device: str) -> None:
    if device != "cpu":  # a GPU runs asynchronously: the unit's kernels must be done (a CPU's are)
        sync(torch.device(device))
    _MARKS.append((unit, time.perf_counter()))


def default_cache_dir() -> Path:
    """``$OCTIFY_CACHE_DIR``, else ``$XDG_CACHE_HOME/octify/latency``, else ``~/.cache/octify/latency``."""
    if os.environ.get("OCTIFY_CACHE_DIR"):
        return Path(os.environ["OCTIFY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "octify" / "latency"


def cache_key(plain: fx.GraphModule, inputs: Sequence[Any], extra: dict) -> str:
    """A digest of everything the timings depend on (not the weights' values)."""
    parts = {
        "code": plain.code,
        "params": [(n, list(p.shape), str(p.dtype)) for n, p in plain.named_parameters()],
        "inputs": [list(x.shape) if isinstance(x, torch.Tensor) else repr(x) for x in inputs],
        "threads": torch.get_num_threads(),
        "device": str(device_of(plain)),
        "machine": [platform.machine(), platform.processor(), os.cpu_count(), torch.__version__],
        **extra,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _tags(gm: fx.GraphModule) -> None:
    """Tag a traced plain model's nodes with their units (a converted one was tagged by the rewrite)."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if UNIT not in node.meta:
            node.meta[UNIT] = unit_of(node, modules)


def _clocked(model: fx.GraphModule, device: torch.device) -> fx.GraphModule:
    """A copy of ``model`` with a clock call before each run of nodes of one unit, and one at the
    end; each waits for ``device``'s work first."""
    gm = copy.deepcopy(model)
    graph, current = gm.graph, object()
    for node in list(graph.nodes):
        if node.op in ("placeholder", "get_attr"):
            continue
        unit = node.meta.get(UNIT, current) if node.op != "output" else "<end>"
        if unit is not current and unit != current:
            with graph.inserting_before(node):
                graph.call_function(_mark, (unit, str(device)))
            current = unit
    gm.recompile()
    return gm


class Timings:
    """Units in order with their times (ms) per alpha (0.0: plain) and the output shape of each."""

    def __init__(self, units: list, ms: dict, shapes: dict, transitions: dict, source: str) -> None:
        self.units, self.ms, self.shapes, self.transitions, self.source = units, ms, shapes, transitions, source

    def to_json(self) -> dict:
        return {"units": self.units, "ms": {u: {repr(a): t for a, t in d.items()} for u, d in self.ms.items()},
                "shapes": self.shapes, "transitions": self.transitions}

    @classmethod
    def from_json(cls, data: dict, source: str) -> "Timings":
        ms = {u: {float(a): t for a, t in d.items()} for u, d in data["ms"].items()}
        return cls(data["units"], ms, data["shapes"], data["transitions"], source)

    def transition(self, index: int, before: float, after: float) -> float:
        """The time of changing form at boundary ``index`` (0: the first unit's input)."""
        if before == after:
            return 0.0
        shape = self.shapes[self.units[max(0, min(index, len(self.units)) - 1)]]
        key = "x".join(map(str, shape))
        table = self.transitions.get(key, {})
        cost = 0.0
        if before > 0.0:
            cost += table.get(f"merge {before!r}", 0.0)
        if after > 0.0:
            cost += table.get(f"split {after!r}", 0.0)
        return cost


def _run_clocked(models: dict, inputs: Sequence[Any], runs: int, device: torch.device, steps: "Optional[Steps]" = None) -> dict:
    """{variant: {unit: [ms per run]}}: the variants alternated, each run's clock marks summed by unit."""
    out: dict = {k: {} for k in models}
    with torch.inference_mode():
        for r in range(runs + 2):
            if steps is not None and r:
                steps.tick()
            for key, model in models.items():
                _MARKS.clear()
                sync(device)
                model(*inputs)
                sync(device)
                if r < 2:
                    continue  # warm-up: oneDNN primitives, allocator
                spans: dict = {}
                for (unit, t0), (_, t1) in zip(_MARKS, _MARKS[1:]):
                    spans[unit] = spans.get(unit, 0.0) + (t1 - t0) * 1e3
                for unit, ms in spans.items():
                    out[key].setdefault(unit, []).append(ms)
    _MARKS.clear()
    return out


def _time_transitions(shapes: dict, alphas: Sequence[float], octave: int, runs: int, device: torch.device) -> dict:
    """{shape: {"split a": ms, "merge a": ms}} for each unit output shape and alpha."""
    table: dict = {}
    for shape in {tuple(s) for s in shapes.values()}:
        if len(shape) != 4:
            continue
        x = torch.randn(*shape, device=device).contiguous(memory_format=torch.channels_last)
        row = {}
        for a in alphas:
            part = Partition.split(shape[1], a)
            if not part.low or not part.high:
                continue
            split, merge = OctaveSplit(partition=part, octave=octave).to(device), OctaveMerge(partition=part, octave=octave).to(device)
            with torch.inference_mode():
                pair = split(x)
                for name, fn in ((f"split {a!r}", lambda: split(x)), (f"merge {a!r}", lambda: merge(pair))):
                    times = []
                    for _ in range(runs + 1):
                        sync(device)
                        t0 = time.perf_counter()
                        fn()
                        sync(device)
                        times.append((time.perf_counter() - t0) * 1e3)
                    row[name] = statistics.median(times[1:])
        table["x".join(map(str, shape))] = row
    return table


def time_units(
    plain: fx.GraphModule, variants: dict, inputs: Sequence[Any], octave: int, runs: int, shapes: dict,
    progress: Optional["Steps"] = None,
) -> Timings:
    """Time each unit in the frozen ``plain`` model and in each frozen ``variants[alpha]``; the
    units are those that hold an octave layer in some variant, in the order they run.
    ``progress`` advances by :data:`TIMING_STEPS` ``(runs)`` steps."""
    device = device_of(plain)
    _tags(plain)
    order: list = []
    for node in plain.graph.nodes:
        unit = node.meta.get(UNIT)
        if unit is not None and unit not in order:
            order.append(unit)
    octave_units = set()
    for gm in variants.values():
        modules = dict(gm.named_modules())
        for node in gm.graph.nodes:
            mod = modules.get(str(node.target)) if node.op == "call_module" else None
            if mod is not None and getattr(mod, "ol", 0) and node.meta.get(UNIT) is not None:
                octave_units.add(node.meta[UNIT])
    units = [u for u in order if u in octave_units and u in shapes]
    models = {0.0: _clocked(plain, device), **{a: _clocked(gm, device) for a, gm in variants.items()}}
    if progress is not None:
        progress.start(f"timing {len(units)} units in {len(models)} forms, {runs} runs each")
    measured = _run_clocked(models, inputs, runs, device, progress)
    ms = {u: {a: statistics.median(measured[a].get(u, [0.0])) for a in models} for u in units}
    if progress is not None:
        progress.tick()
        progress.start("timing the splits and merges between units")
    transitions = _time_transitions({u: shapes[u] for u in units}, list(variants), octave, max(3, runs // 2), device)
    if progress is not None:
        progress.tick()
    return Timings(units, ms, {u: list(shapes[u]) for u in units}, transitions, "measured")


def timing_steps(runs: int) -> int:
    """How many steps :func:`time_units` advances a :class:`Steps` by: one per timed round
    (warm-ups included) and one for the splits and merges."""
    return runs + 3


Progress = Callable[[str, int, int], None]  # (what is being done, steps done, steps in all)


class Steps:
    """A long job's progress, counted in steps, for a :data:`Progress` callback (or none).

    >>> seen = []
    >>> steps = Steps(lambda text, done, total: seen.append((text, done, total)), total=2)
    >>> steps.start("one"); steps.tick(); steps.start("two"); steps.finish()
    >>> seen
    [('one', 0, 2), ('one', 1, 2), ('two', 1, 2), ('two', 2, 2)]
    """

    def __init__(self, progress: Optional[Progress], total: int) -> None:
        self.progress, self.total, self.done, self.text = progress, total, 0, ""

    def start(self, text: str) -> None:
        self.text = text
        self._emit()

    def tick(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self._emit()

    def finish(self) -> None:
        self.tick(self.total - self.done)

    def _emit(self) -> None:
        if self.progress is not None:
            self.progress(self.text, self.done, self.total)


def load_cached(path: Path) -> Optional[Timings]:
    try:
        return Timings.from_json(json.loads(path.read_text()), f"cache {path}")
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: measure again


def store(path: Path, timings: Timings) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(timings.to_json()))
    os.replace(tmp, path)
