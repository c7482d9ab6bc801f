"""The benchmarks' shared helpers: how they time one model against another (benchmarks/timing.py)
and how they write the tables the docs render (benchmarks/result_table.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import result_table  # noqa: E402
import timing  # noqa: E402


def test_a_table_is_printed_row_by_row_and_saved_with_its_machine(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(result_table, "RESULTS", tmp_path)
    table = result_table.ResultTable("t", ["model", "ratio"], "-:")
    table.row("resnet18", "0.71")
    table.note("one note")
    path = table.save()
    out = capsys.readouterr().out
    assert out.splitlines()[:4] == ["| model | ratio |", "|---|---:|", "| resnet18 | 0.71 |", "one note"]
    data = json.loads(path.read_text())
    assert path == tmp_path / "t.json"
    assert (data["columns"], data["align"], data["rows"], data["notes"]) == (["model", "ratio"], "-:", [["resnet18", "0.71"]], ["one note"])
    assert "torch" in data["machine"] and data["command"].startswith("python ")


def test_a_run_with_other_settings_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(result_table, "RESULTS", tmp_path)
    table = result_table.ResultTable("t", ["a"])
    table.row("1")
    assert table.save(unless="a part of the sample") is None
    assert "(not saved: a part of the sample)" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("align", ["-", "-:-", "-x"])
def test_the_alignment_has_one_mark_per_column(align):
    with pytest.raises(ValueError, match=r"align .* must be one '-' or ':' per column, for 2 columns"):
        result_table.ResultTable("t", ["a", "b"], align)


def test_a_row_has_one_cell_per_column():
    table = result_table.ResultTable("t", ["a", "b"])
    with pytest.raises(ValueError, match="a row of 1 cells for 2 columns"):
        table.row("1")


def test_alternate_warms_up_swaps_the_order_and_takes_the_median_of_the_ratios(monkeypatch):
    """A fake clock: each call of a costs 1 ms, of b 3 ms, except one slow call of each (a
    disturbed pair), which the medians ignore."""
    clock, calls = [0.0], []

    def side(name, ms):
        def f():
            calls.append(name)
            slow = 50.0 if len([c for c in calls if c == name]) == 5 else 0.0
            clock[0] += (ms + slow) / 1e3
        return f

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    a_ms, b_ms, ratio = timing.alternate(side("a", 1.0), side("b", 3.0), iters=5, warmup=2, reps=2)
    assert calls[:4] == ["a", "b", "a", "b"]  # warm-up pairs
    timed = calls[4:]
    assert timed == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert (round(a_ms, 6), round(b_ms, 6), round(ratio, 6)) == (1.0, 3.0, 3.0)
