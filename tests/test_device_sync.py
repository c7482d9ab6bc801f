"""Every clock octify reads around model code waits for the device first: on a GPU, kernels run
asynchronously, and a clock read right after a call would time their launch, not their work.
Without a GPU here, ``sync`` is replaced by a recorder and each timing site is checked to call it
on the right device, before and after the code it times."""

from __future__ import annotations

import torch
from torch import nn

import octify
from octify.fx import kernel_choice, measure, measured


def _recorder(monkeypatch, module):
    calls = []
    monkeypatch.setattr(module, "sync", lambda device: calls.append(torch.device(device)))
    return calls


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Conv2d(16, 8, 1)).eval()


def test_the_unit_clocks_wait_for_the_device_they_were_made_for(monkeypatch):
    calls = _recorder(monkeypatch, measure)
    gm = octify.freeze(_model())
    measure._tags(gm)
    clocked = measure._clocked(gm, torch.device("cuda", 1))
    marks = [n for n in clocked.graph.nodes if n.target is measure._mark]
    assert len(marks) >= 2 and all(n.args[1] == "cuda:1" for n in marks)
    measure._MARKS.clear()
    clocked(torch.randn(1, 3, 8, 8))
    assert calls == [torch.device("cuda", 1)] * len(marks)
    assert len(measure._MARKS) == len(marks)
    measure._MARKS.clear()
    calls.clear()
    measure._clocked(gm, torch.device("cpu"))(torch.randn(1, 3, 8, 8))  # a CPU has nothing queued: no sync in the timed spans
    assert calls == [] and len(measure._MARKS) == len(marks)
    measure._MARKS.clear()


def test_the_kernel_choice_syncs_around_each_timed_call(monkeypatch):
    calls = _recorder(monkeypatch, kernel_choice)
    converted = octify.convert(_model(), example_inputs=torch.randn(1, 3, 8, 8))
    frozen = octify.freeze(converted, matmul_1x1=False)
    layers = [m for m in frozen.modules() if isinstance(m, octify.OctConv2d) and m.pointwise]
    assert layers
    kernel_choice.choose_matmul(frozen, (torch.randn(1, 3, 8, 8).contiguous(memory_format=torch.channels_last),), reps=3)
    # Per layer: one warm-up call and three alternated pairs of each kernel, two syncs per call.
    assert calls == [torch.device("cpu")] * (len(layers) * (2 + 2 * 3) * 2)


def test_the_plans_own_check_syncs_around_each_timed_forward(monkeypatch):
    calls = _recorder(monkeypatch, measured)
    a, b = _model(), _model()
    measured._ratio(a, b, (torch.randn(1, 3, 8, 8),), pairs=3)
    assert calls == [torch.device("cpu")] * ((3 + 2) * 2 * 2)
