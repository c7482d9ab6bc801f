"""The measured latency plan (issue 25): the choice by dynamic programming on fake timings
(deterministic), the budgets, the never-slower fallback, the cache, and one real measurement."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import octify
from octify.fx import measured
from octify.fx.choose import PlanPoint, Unit, pick, tradeoff
from octify.fx.measure import Timings

ALPHAS = (0.0, 0.25, 0.5, 0.75)


def _all_plans(units, transition):
    for combo in itertools.product(*[list(u.ms) for u in units]):
        ms = cost = 0.0
        prev = 0.0
        for i, (u, a) in enumerate(zip(units, combo)):
            ms += transition(i, prev, a) + u.ms[a]
            cost += u.cost.get(a, 0.0)
            prev = a
        yield combo, ms + transition(len(units), prev, 0.0), cost


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000))
def test_the_curve_is_the_exact_front_of_every_plan(n, seed):
    g = torch.Generator().manual_seed(seed)
    draw = lambda: float(torch.rand(1, generator=g)) * 10  # noqa: E731
    units = [Unit(f"u{i}", {a: draw() for a in ALPHAS}, {a: (draw() if a else 0.0) for a in ALPHAS}) for i in range(n)]
    switch = {(i, a, b): (0.0 if a == b else draw() / 5) for i in range(n + 1) for a in ALPHAS for b in ALPHAS}
    transition = lambda i, a, b: switch[(i, a, b)]  # noqa: E731
    curve = tradeoff(units, transition)
    plans = {combo: (ms, cost) for combo, ms, cost in _all_plans(units, transition)}
    for p in curve:  # each point is a real plan, at its real time and cost
        assert plans[p.alphas] == pytest.approx((p.ms, p.cost))
    for ms, cost in plans.values():  # and no plan beats the curve on both
        assert any(p.ms <= ms + 1e-9 and p.cost <= cost + 1e-9 for p in curve)
    assert all(p.ms < q.ms and p.cost > q.cost for p, q in zip(curve, curve[1:]))


def _units():
    # Octave pays in the first two units only; changing form costs 1 ms each way.
    return [
        Unit("a", {0.0: 10.0, 0.25: 8.0, 0.5: 6.0, 0.75: 5.5}, {0.25: 0.01, 0.5: 0.03, 0.75: 0.08}),
        Unit("b", {0.0: 10.0, 0.25: 8.5, 0.5: 7.0, 0.75: 7.5}, {0.25: 0.01, 0.5: 0.02, 0.75: 0.06}),
        Unit("c", {0.0: 4.0, 0.25: 5.0, 0.5: 6.0, 0.75: 7.0}, {0.25: 0.01, 0.5: 0.02, 0.75: 0.03}),
    ]


def _switch(i, a, b):
    return 0.0 if a == b else 1.0 if (a == 0.0 or b == 0.0) else 2.0


def test_the_fastest_plan_counts_the_transitions_and_the_curve_runs_to_plain():
    units = _units()
    curve = tradeoff(units, _switch)
    fastest = curve[0]
    # a at 0.75 (5.5) then b at 0.5 (7.0) costs a realign (2); a and b both at 0.5: 6 + 7, no switch.
    assert fastest.alphas == (0.5, 0.5, 0.0) and fastest.ms == pytest.approx(1 + 6 + 7 + 1 + 4)
    assert curve[-1] == PlanPoint((0.0, 0.0, 0.0), 24.0, 0.0)
    assert all(p.ms < q.ms and p.cost > q.cost for p, q in zip(curve, curve[1:]))  # a Pareto front


def test_the_budgets_pick_a_point_and_nothing_slower_than_plain():
    units = _units()
    curve = tradeoff(units, _switch)
    plan, why = pick(curve, 24.0, None, None)
    assert plan.alphas == (0.5, 0.5, 0.0) and why == "the fastest"
    plan, why = pick(curve, 24.0, 0.9, None)
    assert plan.ms <= 0.9 * 24.0 and why == "the least fidelity cost within 0.9x the plain time"
    assert plan.cost == min(p.cost for p in curve if p.ms <= 0.9 * 24.0)
    plan, why = pick(curve, 24.0, 0.5, None)
    assert plan == curve[0] and why == "no plan reaches 0.5x the plain time: the fastest"
    plan, why = pick(curve, 24.0, None, 0.025)
    # a and b at 0.25: 1 + 8 + 8.5 + 1 + 4 = 22.5 ms for 0.02 (a point off the convex hull).
    assert (plan.alphas, plan.ms, why) == ((0.25, 0.25, 0.0), 22.5, "the fastest within fidelity cost 0.025")
    # When octave never pays, the plan is plain whatever the budget.
    slow = [Unit("a", {0.0: 1.0, 0.5: 2.0}, {0.5: 0.1})]
    plan, why = pick(tradeoff(slow, _switch), 1.0, 0.5, None)
    assert plan.alphas == (0.0,) and why == "no octave plan is predicted faster than the plain model"


class Net(nn.Module):
    """A stem, three residual blocks at 32, 16 and 16 pixels, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = Res(16, 32, 1)
        self.b2 = Res(32, 32, 2)
        self.b3 = Res(32, 32, 1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.b3(self.b2(self.b1(F.relu(self.stem(x))))), 1).flatten(1))


class Res(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.skip(x))


def _fake_timings(ms: dict):
    def fake(plain, variants, inputs, octave, runs, shapes, progress=None):
        units = ["b1", "b2", "b3"]
        return Timings(units, {u: dict(ms[u]) for u in units}, {u: list(shapes[u]) for u in units}, {}, "measured")
    return fake


FAST_B1_B2 = {
    "b1": {0.0: 5.0, 0.25: 4.0, 0.5: 3.0, 0.75: 3.5},
    "b2": {0.0: 5.0, 0.25: 4.5, 0.5: 4.0, 0.75: 2.0},
    "b3": {0.0: 1.0, 0.25: 2.0, 0.5: 3.0, 0.75: 4.0},
}


def test_the_measured_plan_converts_what_it_chose_and_records_it(monkeypatch, tmp_path):
    monkeypatch.setattr(measured, "time_units", _fake_timings(FAST_B1_B2))
    monkeypatch.setattr(measured, "_ratio", lambda *a: 0.8)
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 32, 32)
    m = octify.convert(net, example_inputs=x, policy="latency", latency_cache=tmp_path)
    rec = octify.record_of(m)
    plan = rec.latency_plan
    # No transitions timed (the fake has none): b1 at 0.5, b2 at 0.75, b3 plain.
    assert {u["unit"]: u["alpha"] for u in plan["units"]} == {"b1": 0.5, "b2": 0.75, "b3": 0.0}
    assert (plan["plain_ms"], plan["predicted_ms"], plan["verified_ratio"], plan["why"]) == (11.0, 6.0, 0.8, "the fastest")
    convs = {c.name: c for c in rec.convs}
    assert convs["b1.conv1"].alpha_out == 0.5 and convs["b2.conv2"].alpha_out == 0.75
    assert convs["b3.conv1"].plain_reason == "latency policy (measured): plain is faster here"
    assert convs["stem"].plain_reason == "stem (first conv on the model input)"
    assert plan["curve"][0]["ms"] == 6.0 and plan["curve"][-1] == {"ms": 11.0, "cost": 0.0, "octave_units": 0}
    assert set(plan["units"][0]["cost"]) == {"0.25", "0.5", "0.75"} and plan["units"][0]["cost"]["0.75"] > plan["units"][0]["cost"]["0.25"]
    oracle = octify.convert(net, example_inputs=x, policy="latency", latency_cache=False, octave=1)
    assert [u["alpha"] for u in octify.record_of(oracle).latency_plan["units"]] == [0.5, 0.75, 0.0]
    torch.testing.assert_close(oracle(x), net(x), rtol=1e-4, atol=1e-5)  # the oracle holds for a measured plan
    # The timings went to the cache; a second conversion reads them instead of measuring.
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and set(json.loads(files[0].read_text())) == {"units", "ms", "shapes", "transitions"}
    monkeypatch.setattr(measured, "time_units", lambda *a, **k: pytest.fail("measured again despite the cache"))
    seen = []
    again = octify.convert(net, example_inputs=x, policy="latency", latency_cache=tmp_path, progress=lambda *s: seen.append(s))
    again = octify.record_of(again).latency_plan
    assert again["source"] == f"cache {files[0]}" and [u["alpha"] for u in again["units"]] == [0.5, 0.75, 0.0]
    # The progress callback: steps only go forward, all under one total, and end at it.
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and {t for _, _, t in seen} == {measured.LATENCY_RUNS + 10} and done[-1] == seen[0][2]
    texts = [t for t, _, _ in seen]
    assert texts[0] == "converting at alpha 0.25" and "timings from the cache" in texts and texts[-1] == "timing it against the plain model"
    # Another batch size is another measurement.
    monkeypatch.setattr(measured, "time_units", _fake_timings(FAST_B1_B2))
    octify.convert(net, example_inputs=torch.randn(4, 3, 32, 32), policy="latency", latency_cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_plan_that_measures_slower_keeps_the_model_plain(monkeypatch, tmp_path):
    monkeypatch.setattr(measured, "time_units", _fake_timings(FAST_B1_B2))
    monkeypatch.setattr(measured, "_ratio", lambda *a: 1.07)
    net = Net().eval()
    x = torch.randn(1, 3, 32, 32)
    m = octify.convert(net, example_inputs=x, policy="latency", latency_cache=False)
    rec = octify.record_of(m)
    assert not rec.converted and rec.latency_plan["verified_ratio"] == 1.07
    assert rec.latency_plan["why"] == "the chosen plan measured 1.07x the plain model: kept plain"
    assert {c.plain_reason for c in rec.convs if c.name != "stem"} == {
        "latency policy (measured): the chosen plan measured 1.07x the plain model: kept plain"}
    torch.testing.assert_close(m(x), net(x))


def test_where_nothing_can_be_timed_the_static_rules_plan_and_say_why(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no timer here")

    monkeypatch.setattr(measured, "freeze", broken)
    m = octify.convert(Net().eval(), example_inputs=torch.randn(1, 3, 32, 32), policy="latency", latency_cache=False)
    plan = octify.record_of(m).latency_plan
    assert plan == {"source": "static rules (policy='latency-rules')",
                    "why": "the forms could not be frozen and timed here (RuntimeError: no timer here)"}


def test_the_latency_options_say_what_they_expected():
    net, x = Net().eval(), torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="a latency or fidelity budget needs policy='latency' .* found policy='default'"):
        octify.convert(net, example_inputs=x, latency_budget=0.7)
    with pytest.raises(ValueError, match="latency_budget and fidelity_budget: give one budget, found both"):
        octify.convert(net, example_inputs=x, policy="latency", latency_budget=0.7, fidelity_budget=0.1)
    with pytest.raises(ValueError, match="policy='latency' chooses each block's alpha itself; found alpha_for as well"):
        octify.convert(net, example_inputs=x, policy="latency", alpha_for={"b1.*": 0.25})
    with pytest.raises(ValueError, match="latency_budget must be a number > 0"):
        octify.convert(net, example_inputs=x, policy="latency", latency_budget=0)


def test_a_real_measurement_times_every_unit_and_never_returns_a_slower_plan(tmp_path):
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 3, 32, 32)
    m = octify.convert(net, example_inputs=x, policy="latency", latency_cache=tmp_path)
    plan = octify.record_of(m).latency_plan
    assert [u["unit"] for u in plan["units"]] == ["b1", "b2", "b3"] and plan["source"] == "measured"
    assert all(t > 0 for u in plan["units"] for t in u["ms"].values())
    assert plan["plain_ms"] == pytest.approx(sum(u["ms"]["0.0"] for u in plan["units"]))
    chosen = [u["alpha"] for u in plan["units"]]
    if any(chosen):  # an octave plan is returned only when it measured faster
        assert plan["verified_ratio"] <= 1.0 and plan["predicted_ms"] < plan["plain_ms"]
    else:
        assert not octify.record_of(m).converted
    assert plan["seconds"] < 60
