"""int8 post-training static quantization of a frozen octave model through torchao's PT2E flow
(``benchmarks/quantize.py`` measures the same flow on whole networks, compiled).

The flow: ``octify.freeze(converted, matmul_1x1=False)`` (1x1 octave convs stay convs, which the quantizer annotates),
``torch.export.export(..., strict=True)`` (non-strict export groups every call of one nn.ReLU
module, here the two branches of a pair, into one source partition, which
X86InductorQuantizer's conv fusion annotation rejects), ``prepare_pt2e`` with
X86InductorQuantizer, calibration, ``convert_pt2e``. The result is the reference q/dq model,
checked here in eager mode (compiling it to int8 kernels takes too long for a unit test).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import octify

from conftest import randomize_bn, rel_err

import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  (a dev extra; registers the quantized_decomposed ops)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from forms import quantize as _quantize  # noqa: E402  (README's PT2E flow, one home with the benchmarks)

A, QD = torch.ops.aten, torch.ops.quantized_decomposed
DEQUANT = {QD.dequantize_per_tensor.default, QD.dequantize_per_tensor.tensor, QD.dequantize_per_channel.default}
VIEWS = {A.view.default, A.t.default, A.permute.default, A.reshape.default, A._unsafe_view.default}
# op -> (index of the activation argument, index of the weight argument)
MERGED = ["conv2.0", "conv3.0"]  # conv1 takes the plain stem: no L->H to merge
GEMMS = {A.conv2d.default: (0, 1), A.linear.default: (0, 1), A.mm.default: (0, 1), A.addmm.default: (1, 2), A.addmm_.default: (1, 2)}


class Net(nn.Module):
    """3x3 and 1x1 convs with batch norms, a residual add, a strided conv, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.relu = nn.ReLU()
        self.conv3 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.stem(x))
        y = self.relu(self.conv2(y) + y)
        return self.fc(self.conv3(y).mean((2, 3)))


def _source(node):
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in VIEWS:
        node = node.args[0]
    return node


def _gemms(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, bool, bool]]:
    """(node, inside an OctConv2d, int8: activation and weight both come from a dequantize) for
    every conv2d / linear / mm / addmm(_) of ``gm`` (a frozen 1x1 octave conv accumulates H->H onto L->H with addmm_)."""
    out = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in GEMMS:
            stack = n.meta.get("nn_module_stack") or {}
            octave = bool(stack) and "OctConv2d" in str(list(stack.values())[-1][1])
            quantized = all(getattr(_source(n.args[i]), "target", None) in DEQUANT for i in GEMMS[n.target])
            out.append((n, octave, quantized))
    return out


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = randomize_bn(Net().eval(), 0)
    g = torch.Generator().manual_seed(1)
    calibration = [torch.randn(4, 3, 32, 32, generator=g) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = octify.convert(model, alpha=0.5, example_inputs=calibration[0]).eval()
    n_oct = sum(isinstance(m, octify.OctConv2d) for m in converted.modules())
    assert n_oct == 3  # conv1 (H -> H, L), conv2 (1x1, four paths), conv3 (strided)
    return converted, calibration, torch.randn(4, 3, 32, 32, generator=g)


@pytest.mark.parametrize("memory_format", ["channels_last", "preserve"])
def test_pt2e_int8_quantizes_every_octave_conv(setup, memory_format):
    converted, calibration, x = setup
    frozen = octify.freeze(converted, memory_format=memory_format, matmul_1x1=False)
    qm = _quantize(frozen, calibration)
    gemms = _gemms(qm)
    octave = [q for _, is_oct, q in gemms if is_oct]
    # conv1: H->H and H->L (2), conv2: H->H, L->H and the fused [H->L | L->L] (3), conv3 (3),
    # plus the plain stem conv and the linear head.
    assert len(octave) == 8, [(n.name, o) for n, o, _ in gemms]
    assert all(q for _, _, q in gemms), [n.name for n, _, q in gemms if not q]
    assert len(gemms) == 10
    with torch.no_grad():
        want, got = frozen(x), qm(x)
    assert not torch.equal(got, want)  # int8 rounding happened
    assert rel_err(got, want) < 0.05  # measured 0.007


def test_matmul_1x1_freeze_keeps_pointwise_matmuls_float(setup):
    """``freeze(matmul_1x1=True)`` runs 1x1 octave convs as torch.mm / addmm, which the x86
    quantizer does not annotate (it knows conv2d, linear and matmul): those stay float32, the
    rest is int8. Hence ``matmul_1x1=False`` for quantization; if this starts failing,
    torchao quantizes mm/addmm too."""
    converted, calibration, x = setup
    frozen = octify.freeze(converted, matmul_1x1=True)
    qm = _quantize(frozen, calibration)
    gemms = _gemms(qm)
    matmuls = [q for n, _, q in gemms if n.target in (A.mm.default, A.addmm.default, A.addmm_.default)]
    convs = [q for n, _, q in gemms if n.target in (A.conv2d.default, A.linear.default)]
    assert len(matmuls) == 4 and not any(matmuls)  # conv2: H->H, L->H, L->L, H->L accumulated
    assert all(convs) and len(convs) == 7
    with torch.no_grad():
        want, got = frozen(x), qm(x)
    assert 0 < rel_err(got, want) < 0.05  # measured 0.007


def test_merged_low_convs_quantize_as_two_convs_per_layer(setup):
    """README's int8 flow freezes with ``merge_lh=True``: L->H is computed by the low output's
    conv (zeros where the pooled high input would feed it), so conv2 and conv3 run two int8
    convs each where they ran three; its zeros quantize to zeros, and the numbers stay as close."""
    converted, calibration, x = setup
    frozen = octify.freeze(converted, matmul_1x1=False, merge_lh=True)
    assert [n for n, m in frozen.named_modules() if getattr(m, "merges_lh", False)] == MERGED
    qm = _quantize(frozen, calibration)
    gemms = _gemms(qm)
    octave = [q for _, is_oct, q in gemms if is_oct]
    assert len(octave) == 8 - len(MERGED), [(n.name, o) for n, o, _ in gemms]  # one conv fewer per merged layer
    assert all(q for _, _, q in gemms), [n.name for n, _, q in gemms if not q]
    with torch.no_grad():
        want, got = frozen(x), qm(x)
    assert not torch.equal(got, want)
    assert rel_err(got, want) < 0.05
    with torch.no_grad():
        unmerged = octify.freeze(converted, matmul_1x1=False)(x)
    assert rel_err(want, unmerged) < 1e-6  # the same function in float
