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


def test_the_profile_sorts_each_kernel_into_its_column():
    import profile_ops

    # Event names as torch.profiler reports them: eager aten kernels, inductor's prepacked and int8
    # oneDNN calls, a generated kernel, and the wrappers whose time is outside any kernel.
    assert [profile_ops.kind(k) for k in (
        "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "mkldnn::_convolution_pointwise_", "onednn::qconv2d_pointwise",
        "aten::addmm", "aten::addmm_", "mkl::_mkl_linear", "onednn::qlinear_pointwise", "graph_2_cpp_fused_add_avg_pool2d_cat_permute_relu_view_9",
        "aten::add", "quantized::max_pool2d", "aten::conv2d", "## Call CompiledFxGraph None ##", "TorchDynamo Cache Lookup",
    )] == ["conv", "conv", "conv", "conv", "mm", "mm", "mm", "mm", "generated", "other", "other", "other", None, None]


def test_the_profile_note_bounds_the_ratio_by_the_convolutions_and_products():
    import profile_ops

    # Plain: 80 ms of convs and products, 20 of the rest; octave: 50 and 35. Had the octave model
    # only its kernels beyond the plain model's rest: (50 + 20) / (80 + 20).
    got = {"plain": {"conv": 70.0, "mm": 10.0, "generated": 0.0, "other": 15.0, "host": 5.0},
           "octave": {"conv": 40.0, "mm": 10.0, "generated": 5.0, "other": 20.0, "host": 10.0}}
    assert round(profile_ops.bound(got), 6) == 0.7
    assert profile_ops.note("resnet50", 8, "eager", got, 0.536, 0.62) == (
        "resnet50, batch 8, eager: the octave model's convolutions and products take 0.62x the plain model's for 0.54x the "
        "MACs; everything else 35.0 ms against 20.0; with the plain model's everything else, the ratio would be 0.70 (target 0.62).")
    assert profile_ops.note("resnet50", 4, "eager", got, 0.536, None).endswith("the ratio would be 0.70.")


def test_the_profile_of_a_small_model_finds_its_conv_and_its_product():
    import profile_ops
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 4)).eval()
    got = profile_ops.breakdown(model, torch.randn(2, 3, 16, 16), forwards=2)
    assert got["conv"] > 0 and got["mm"] > 0 and got["generated"] == 0 and got["host"] >= 0
    # conv2d -> convolution -> _convolution -> the kernel, linear -> addmm (and the views around them)
    assert got["calls"] >= 6


def test_the_saved_command_is_the_one_typed_at_the_repository_root_wherever_it_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(result_table, "RESULTS", tmp_path / "benchmarks" / "results")
    (tmp_path / "benchmarks").mkdir()
    monkeypatch.chdir(tmp_path / "benchmarks")  # started as `cd benchmarks && python latency.py --iters 7`
    monkeypatch.setattr(sys, "argv", ["latency.py", "--iters", "7"])
    table = result_table.ResultTable("t", ["a"])
    table.row("1")
    assert json.loads(table.save().read_text())["command"] == "python benchmarks/latency.py --iters 7"


def test_the_stage_times_of_a_small_model_cover_its_layers_and_the_rest_of_the_forward():
    import profile_ops
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
            self.head = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.head(torch.relu(self.body(self.stem(x))).mean((2, 3)))

    net = Net().eval()
    x = torch.randn(2, 3, 16, 16)
    twin = Net().eval()
    both = profile_ops.stage_times({"plain": net, "octave": twin}, x, forwards=3)
    assert list(both) == ["plain", "octave"] and list(both["octave"]) == list(both["plain"])
    got = both["plain"]
    # One entry per stage with layers of its own (the ReLU has no weights: between layers), in the order they ran.
    assert list(got) == ["stem", "body", "head", "between layers", "forward"]
    assert all(v > 0 for v in got.values()) and got["stem"] + got["body"] + got["head"] < got["forward"]
    assert not net._forward_hooks and not net.stem._forward_pre_hooks  # the hooks are gone
    macs = profile_ops.stage_macs(net, x)
    # For the batch of 2: the stem's 3->8 3x3 conv, the body's two 8->8 ones, the head's 8->4 Linear.
    assert (macs["stem"], macs["body"], macs["head"]) == (2 * 16 * 16 * 8 * 3 * 9, 2 * 2 * 16 * 16 * 8 * 8 * 9, 2 * 8 * 4)
    assert macs["forward"] == macs["stem"] + macs["body"] + macs["head"]

