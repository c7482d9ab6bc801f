"""The measured latency plan's choice: one alpha per unit (0 = plain), by dynamic programming.

The units (residual blocks, inverted-residual blocks, dense stages...; ``measure.py``) run one
after another; each has a measured time at every alpha and a fidelity cost (the loss of sending
its channels an octave down). Between two units the maps change form when their alphas differ:
a split (plain -> octave), a merge (octave -> plain) or both (one alpha -> another), each with
its measured time. Dynamic programming over the chain keeps, for each unit and alpha, the
partial plans that no other beats on both time and fidelity cost; at the end they are the
trade-off curve, from the fastest plan to the all-plain one, and a budget picks a point on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

__all__ = ["Unit", "PlanPoint", "tradeoff", "pick"]

FRONT_CAP = 256  # partial plans kept per unit and alpha: exact for every chain measured here


@dataclass(frozen=True)
class Unit:
    """One place the plan decides: ``ms[alpha]`` its measured time (``0.0`` the plain one),
    ``cost[alpha]`` its fidelity cost (0 for plain)."""

    name: str
    ms: dict
    cost: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PlanPoint:
    """One plan: the alpha of each unit, its predicted time and its fidelity cost."""

    alphas: tuple
    ms: float
    cost: float


Transition = Callable[[int, float, float], float]  # (boundary index, alpha before, alpha after) -> ms


def _front(points: list, cap: int) -> list:
    """The (ms, cost, path) points no other is both faster and cheaper than, fastest first;
    thinned evenly to ``cap`` (ends kept) when there are more."""
    out: list = []
    for p in sorted(points, key=lambda p: (p[0], p[1], p[2])):
        if not out or p[1] < out[-1][1]:
            out.append(p)
    if len(out) > cap:
        step = (len(out) - 1) / (cap - 1)
        out = [out[round(i * step)] for i in range(cap)]
    return out


def tradeoff(units: Sequence[Unit], transition: Transition, cap: int = FRONT_CAP) -> list[PlanPoint]:
    """Every plan on the trade-off curve between time and fidelity cost, fastest first (exact up
    to ``cap`` points per alpha and unit): for each unit and alpha, the front of the partial
    plans ending there -- dynamic programming over the chain, transitions included. Boundary 0
    is the input of the first unit (plain), boundary ``len(units)`` the output of the last (plain
    again, for the head)."""
    fronts: dict = {0.0: [(0.0, 0.0, ())]}
    for i, unit in enumerate(units):
        step = {}
        for a, ms in unit.ms.items():
            c = unit.cost.get(a, 0.0)
            step[a] = _front([(pms + transition(i, prev, a) + ms, pcost + c, path + (a,))
                              for prev, front in fronts.items() for pms, pcost, path in front], cap)
        fronts = step
    ends = [(ms + transition(len(units), a, 0.0), cost, path) for a, front in fronts.items() for ms, cost, path in front]
    return [PlanPoint(path, ms, cost) for ms, cost, path in _front(ends, cap)]


def pick(curve: Sequence[PlanPoint], plain_ms: float, latency_budget: Optional[float], fidelity_budget: Optional[float]) -> tuple[PlanPoint, str]:
    """The plan a budget asks for, with why: the least fidelity cost within ``latency_budget``
    (a fraction of the plain time), the fastest within ``fidelity_budget``, or the fastest. Never
    one predicted slower than plain: then the all-plain plan."""
    plain = next((p for p in curve if not any(p.alphas)), None)
    if plain is None and curve:
        plain = PlanPoint(tuple(0.0 for _ in curve[0].alphas), plain_ms, 0.0)
    faster = [p for p in curve if p.ms < plain_ms]
    if not faster:
        return plain, "no octave plan is predicted faster than the plain model"
    if latency_budget is not None:
        within = [p for p in faster if p.ms <= latency_budget * plain_ms]
        if within:
            return min(within, key=lambda p: (p.cost, p.ms)), f"the least fidelity cost within {latency_budget:g}x the plain time"
        return min(faster, key=lambda p: (p.ms, p.cost)), f"no plan reaches {latency_budget:g}x the plain time: the fastest"
    if fidelity_budget is not None:
        within = [p for p in faster if p.cost <= fidelity_budget]
        if within:
            return min(within, key=lambda p: (p.ms, p.cost)), f"the fastest within fidelity cost {fidelity_budget:g}"
        return plain, f"no faster plan stays within fidelity cost {fidelity_budget:g}"
    return min(faster, key=lambda p: (p.ms, p.cost)), "the fastest"
