"""Tracing that follows the example inputs: control flow on shapes, unpacking, int(), len(),
iterating chunks, optional parameters, *args / **kwargs, keyword inputs, dict outputs."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify

from conftest import rel_err

RTOL = 1e-5


def convert_quiet(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return octify.convert(model, **kw)


class ShapeChecks(nn.Module):
    """The kinds of Python the tracer must follow (smp's ``h % output_stride`` check, HF's
    ``b, c, h, w = x.shape`` and ``int(...)``, iterating ``chunk``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a = nn.Conv2d(16, 16, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x, scale=None, **kwargs):
        b, c, h, w = x.shape
        if h % 8 != 0 or w % 8 != 0:
            raise RuntimeError(f"the input size must be a multiple of 8, found {h}x{w}")
        y = F.relu(self.a(F.relu(self.stem(x))))
        parts = [self.b(p) for p in y.chunk(2, 1)]
        y = torch.cat(parts, 1) * len(parts) / 2
        if scale is not None:
            y = y * scale
        if kwargs.get("skip_head"):
            return y
        half = int(h / 2)
        out = self.head(y)
        return collections.OrderedDict(logits=out, pooled=F.adaptive_avg_pool2d(out, half).flatten(1))


def test_shape_control_flow_resolves_on_the_example_and_is_recorded():
    torch.manual_seed(0)
    model = ShapeChecks().eval()
    x = torch.randn(2, 3, 16, 16)
    exact = convert_quiet(model, example_inputs=x, octave=1)
    with torch.no_grad():
        got, want = exact(x), model(x)
    assert type(got) is collections.OrderedDict and list(got) == ["logits", "pooled"]
    for k in want:
        assert rel_err(got[k], want[k]) <= RTOL
    spec = octify.record_of(exact).specialized
    assert [s.code for s in spec[:2]] == ["if h % 8 != 0 or w % 8 != 0:"] * 2
    assert all(s.where.startswith("test_tracing.py:") for s in spec)
    assert [s.value for s in spec] == [False, False, False, 8]  # h and w checks, kwargs.get("skip_head"), int(h / 2)
    octave = convert_quiet(model, example_inputs=x)
    rec = octify.record_of(octave)
    assert rec.merges == [] and len(rec.converted) == 4  # b converts per chunk; the shape reads need no merge


def test_a_converted_model_refuses_an_input_that_would_take_another_branch():
    model = ShapeChecks().eval()
    out = convert_quiet(model, example_inputs=torch.randn(1, 3, 16, 16))
    with torch.no_grad():
        out(torch.randn(3, 3, 16, 16))  # another batch: the same branches
        with pytest.raises(ValueError, match=r"`half = int\(h / 2\)` \(test_tracing.py:\d+\) was True; for this input it is False"):
            out(torch.randn(1, 3, 32, 32))  # int(h / 2) was 8 at 16x16


def test_keyword_inputs_defaults_and_kwargs():
    model = ShapeChecks().eval()
    x = torch.randn(1, 3, 16, 16)
    s = torch.tensor(2.0)
    out = convert_quiet(model, example_inputs={"x": x, "scale": s}, octave=1)
    with torch.no_grad():
        assert rel_err(out(x, s)["logits"], model(x, scale=s)["logits"]) <= RTOL
    # **kwargs kept at its default (empty): the head runs; skip_head=True would be another model.
    assert "logits" in out(x, s)


class TakesArgs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, *xs):
        y = sum(self.a(F.relu(self.stem(x))) for x in xs)
        return self.fc(y.mean((2, 3)))


def test_star_args_forward():
    model = TakesArgs().eval()
    xs = (torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16))
    out = convert_quiet(model, example_inputs=xs, octave=1)
    with torch.no_grad():
        assert rel_err(out(*xs), model(*xs)) <= RTOL


class ValueBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        if y.mean() > 0:  # a tensor's value: the example cannot decide it
            y = -y
        return y


def test_control_flow_on_values_names_the_users_line():
    with pytest.raises(octify.ConversionError) as e:
        octify.convert(ValueBranch(), example_inputs=torch.randn(1, 3, 8, 8))
    msg = str(e.value)
    assert "at test_tracing.py:" in msg and "(`if y.mean() > 0:  # a tensor's value: the example cannot decide it`)" in msg
    assert "leaf_modules=[" not in msg  # the model's own forward: no hint that converts nothing


def test_a_model_with_guards_and_a_rebuilt_output_saves_and_reloads(tmp_path):
    model = ShapeChecks().eval()
    x = torch.randn(1, 3, 16, 16)
    out = convert_quiet(model, example_inputs=x)
    back = octify.load(octify.save(out, tmp_path / "m.safetensors"), model=model)
    with torch.no_grad():
        got, want = back(x), out(x)
    assert type(got) is collections.OrderedDict
    torch.testing.assert_close(got["logits"], want["logits"])
    assert octify.record_of(back).specialized == octify.record_of(out).specialized
    with pytest.raises(ValueError, match="Convert it again with example_inputs of this input's shape"):
        back(torch.randn(1, 3, 32, 32))
