"""Tests of the report (octify.profile / octify.compare): real numbers, with the arithmetic beside
each golden number; counting on fake tensors (proved: no real conv kernel runs); the JSON
schema of to_dict(); the rendered tables."""

from __future__ import annotations

import io
import json
import time
from collections import OrderedDict
from typing import Any, List

import pytest
import torch
import torch.nn.functional as F
import torchvision
from rich.console import Console
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile
from torch.utils.flop_counter import FlopCounterMode

import octify
from octify import Comparison, OctaveDual, OctBatchNorm2d, OctConv2d, Profile, compare, profile
from octify.report import octave_bytes_ratio, octave_macs_ratio


def render(obj: Any, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(obj)
    return console.export_text()


def params_of(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# a single Conv2d
# ---------------------------------------------------------------------------------------------
def test_single_conv2d():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    p = profile(conv, torch.randn(1, 3, 32, 32))
    assert isinstance(p, Profile)
    assert p.macs == 221_184  # 8 out * 3 in * 3*3 kernel * 32*32 positions = 221,184
    assert p.flops == 442_368  # 2 * 221,184 (FlopCounterMode: FLOPs = 2 x MACs, bias not counted)
    assert p.params == 224 == params_of(conv)  # 8*3*9 weights + 8 bias = 224
    assert p.feature_map_bytes == 32_768  # output 1*8*32*32 float32 = 8192 * 4 bytes
    [row] = p.layers
    assert (row.name, row.type, row.calls) == ("", "Conv2d", 1)
    assert row.output_shapes == [[1, 8, 32, 32]]
    assert (row.macs, row.flops, row.params, row.feature_map_bytes) == (221_184, 442_368, 224, 32_768)


def test_batch_and_dtype_scale_the_counts():
    conv = nn.Conv2d(3, 8, 3, padding=1).to(torch.float64)
    p = profile(conv, torch.randn(4, 3, 32, 32, dtype=torch.float64))
    assert p.macs == 884_736  # 4 (batch) * 221,184
    assert p.feature_map_bytes == 262_144  # 4*8*32*32 = 32,768 elements * 8 bytes (float64)
    assert p.inputs == [{"shape": [4, 3, 32, 32], "dtype": "float64"}]
    assert p.batch == 4


def test_linear_bias_not_counted():
    p = profile(nn.Linear(10, 5), torch.randn(2, 10))
    assert p.macs == 100  # 2 rows * 10 in * 5 out (the bias add is not counted)
    assert p.params == 55  # 10*5 + 5


# ---------------------------------------------------------------------------------------------
# a single OctConv2d against the formula (even sizes)
# ---------------------------------------------------------------------------------------------
PLAIN_MACS = 2_359_296  # nn.Conv2d(16, 16, 3) at 32x32: 16*16*9*1024
PLAIN_BYTES = 65_536  # its output 16*32*32 float32: 16384 * 4

# alpha: (MACs, feature-map bytes), with ih = oh = 16 - 16a high and il = ol = 16a low channels:
# MACs = HH ih*oh*9*1024 + (HL ih*ol + LH il*oh + LL il*ol)*9*256
# bytes = (oh*32*32 + ol*16*16) * 4
OCT_GOLDEN = {
    0.25: (1_585_152, 53_248),  # 12*12*9*1024 + (48+48+16)*9*256 = 1,327,104 + 258,048; (12*1024 + 4*256)*4
    0.5: (1_032_192, 40_960),  # 8*8*9*1024 + (64+64+64)*9*256 = 589,824 + 442,368; (8*1024 + 8*256)*4
    0.75: (700_416, 28_672),  # 4*4*9*1024 + (48+48+144)*9*256 = 147,456 + 552,960; (4*1024 + 12*256)*4
}


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_single_octconv_matches_formula(alpha: float):
    conv = OctConv2d(16, 16, 3, padding=1, alpha=alpha)
    high = torch.randn(1, conv.ih, 32, 32)
    low = torch.randn(1, conv.il, 16, 16)
    p = profile(conv, ((high, low),))
    macs, nbytes = OCT_GOLDEN[alpha]
    assert p.macs == macs
    assert p.feature_map_bytes == nbytes
    # The paper's formulas, exact on even sizes: MACs 1 - 3/4 a (2 - a), memory 1 - 3/4 a.
    assert p.macs == PLAIN_MACS * (1 - 0.75 * alpha * (2 - alpha))
    assert p.macs == PLAIN_MACS * octave_macs_ratio(alpha, alpha)
    assert p.feature_map_bytes == PLAIN_BYTES * (1 - 0.75 * alpha)
    assert p.feature_map_bytes == PLAIN_BYTES * octave_bytes_ratio(alpha)
    assert p.params == params_of(conv) == 16 * 16 * 9 + 16  # the paths tile the plain weight: 2,320
    [row] = p.layers
    assert row.type == "OctConv2d"
    assert row.output_shapes == [[1, conv.oh, 32, 32], [1, conv.ol, 16, 16]]


def test_octave_ratio_general_alphas():
    # First layer (0, a): H->H (1-a) at full size + H->L a at a quarter.
    assert octave_macs_ratio(0.0, 0.5) == 0.5 + 0.5 / 4 == 0.625
    # Last layer (a, 0): H->H (1-a) + L->H a / 4.
    assert octave_macs_ratio(0.5, 0.0) == 0.625
    # Octave 4: the three low paths at 1/16 of the area: 1/4 + 3/4 / 16 = 0.296875.
    assert octave_macs_ratio(0.5, 0.5, octave=4) == 0.296875
    # Depthwise (no cross paths): (1-a) + a/4.
    assert octave_macs_ratio(0.5, 0.5, depthwise=True) == 0.625


# ---------------------------------------------------------------------------------------------
# torchvision resnet50
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_resnet50_totals_agree_with_flop_counter():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = profile(model, x)
    assert p.macs == 4_089_184_256  # the paper's 4.1 G "FLOPs" (multiply-accumulates)
    assert p.flops == 8_178_368_512  # 2 * 4,089,184,256
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)  # real tensors, once
    assert p.flops == counter.get_total_flops()  # to the unit
    assert p.params == params_of(model) == 25_557_032
    # Totals are the sums of the rows.
    assert p.macs == sum(r.macs for r in p.layers)
    assert p.flops == sum(r.flops for r in p.layers)
    assert p.params == sum(r.params for r in p.layers)
    assert p.feature_map_bytes == sum(r.feature_map_bytes for r in p.layers)
    assert p.layer("conv1").macs == 118_013_952  # 64*3*7*7 * 112*112 = 9408 * 12544
    assert p.layer("fc").macs == 2_048_000  # 2048 * 1000
    assert p.layer("layer1.0.relu").calls == 3  # the Bottleneck's ReLU module runs three times
    # The model is untouched: same values, no leftover hooks.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_model_left_untouched_in_train_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[0].weight
    profile(model, torch.randn(2, 3, 8, 8))
    assert model.training and model[1].training
    assert model[0].weight is weight and weight.device.type == "cpu"
    for k, v in model.state_dict().items():  # running stats and num_batches_tracked unchanged
        assert torch.equal(v, state[k]), k
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------
# big models, no real compute
# ---------------------------------------------------------------------------------------------
# The CPU kernels a real convolution dispatches to (aten::convolution -> aten::_convolution ->
# one of these); a FakeTensor convolution stops at aten::convolution and runs its meta function.
REAL_CONV_KERNELS = {
    "aten::_convolution",
    "aten::mkldnn_convolution",
    "aten::_slow_conv2d_forward",
    "aten::thnn_conv2d",
    "aten::_nnpack_spatial_convolution",
    "aten::_conv_depthwise2d",
    "aten::slow_conv_dilated2d",
}


class ConvSpy:
    """Wraps F.conv2d: records whether each call's input and weight were FakeTensors."""

    def __init__(self) -> None:
        self.calls: List[bool] = []
        self.original = F.conv2d

    def __call__(self, input, weight, *args, **kwargs):
        self.calls.append(isinstance(input, FakeTensor) and isinstance(weight, FakeTensor))
        return self.original(input, weight, *args, **kwargs)


def profile_without_compute(monkeypatch, model: nn.Module, x: torch.Tensor):
    spy = ConvSpy()
    monkeypatch.setattr(F, "conv2d", spy)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        p = profile(model, x)
        elapsed = time.perf_counter() - start
    kernels = {e.name for e in prof.events()} & REAL_CONV_KERNELS
    return p, spy, kernels, elapsed


def test_positive_control_real_conv_is_seen(monkeypatch):
    # The proof below is meaningful: a real conv does show up in both spies.
    spy = ConvSpy()
    monkeypatch.setattr(F, "conv2d", spy)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        nn.Conv2d(3, 8, 3)(torch.randn(1, 3, 16, 16))
    assert spy.calls == [False]
    assert {e.name for e in prof.events()} & REAL_CONV_KERNELS


@pytest.mark.parametrize(
    "name, size, macs, params",
    [
        # MACs and params as profiled here (params = sum(p.numel()) of the real model).
        pytest.param("efficientnet_b7", 600, 37_745_884_192, 66_347_960, marks=pytest.mark.slow),
        ("regnet_y_16gf", 224, 15_911_510_272, 83_590_140),
    ],
)
def test_big_models_profile_without_real_compute(monkeypatch, name: str, size: int, macs: int, params: int):
    model = getattr(torchvision.models, name)(weights=None)
    x = torch.randn(1, 3, size, size)
    start = time.perf_counter()
    profile(model, x)
    plain = time.perf_counter() - start
    p, spy, kernels, elapsed = profile_without_compute(monkeypatch, model, x)
    print(
        f"\n{name}@{size}: profiled in {plain:.2f} s ({elapsed:.2f} s under the spies), "
        f"{len(spy.calls)} conv2d calls, all on FakeTensors"
    )
    assert len(spy.calls) > 50 and all(spy.calls)  # every conv2d saw a FakeTensor input and weight
    assert kernels == set()  # no CPU convolution kernel was dispatched
    assert p.macs == macs
    assert p.params == params == params_of(model)
    assert p.macs == sum(r.macs for r in p.layers)
    assert p.feature_map_bytes == sum(r.feature_map_bytes for r in p.layers)


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------
def test_bad_inputs():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(TypeError, match="must be a torch.nn.Module, found str"):
        profile("resnet", torch.randn(1, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Tensor or a tuple of positional inputs.*found ndarray"):
        import numpy as np

        profile(conv, np.zeros((1, 3, 8, 8)))
    with pytest.raises(TypeError, match="found a list of 1"):
        profile(conv, [torch.randn(1, 3, 8, 8)])
    with pytest.raises(ValueError, match="empty tuple"):
        profile(conv, ())
    with pytest.raises(ValueError, match="at least one Tensor, found only int"):
        profile(conv, (3,))
    with pytest.raises(TypeError, match=r"example_inputs\[0\] must be a Tensor.*found object"):
        profile(conv, (object(),))
    with pytest.raises(ValueError, match=r"Conv2d failed on the example inputs \(float32\[1, 4, 8, 8\]\)"):
        profile(conv, torch.randn(1, 4, 8, 8))  # 4 channels into a 3-channel conv
    with pytest.raises(ValueError, match="expected a \\(high, low\\) pair"):
        profile(OctConv2d(8, 8, 3, padding=1, alpha=0.5), torch.randn(1, 8, 8, 8))
    with pytest.raises(ValueError, match="runs must be an integer >= 1, found 0"):
        profile(conv, torch.randn(1, 3, 8, 8), latency=True, runs=0)


def test_other_row_holds_functional_flops_and_container_params():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(4))  # owned by a container: the (other) row
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Parameter(torch.randn(2, 4, 1, 1))
            self.unused = nn.Linear(3, 3)  # never called: a row with its params, no MACs
            self.tied = nn.Conv2d(3, 4, 3, padding=1)
            self.tied.weight = self.conv.weight  # shared: counted once, at conv

        def forward(self, x):
            return F.conv2d(self.conv(x) * self.scale.view(1, -1, 1, 1), self.head)  # a functional conv

    net = Net()
    p = profile(net, torch.randn(1, 3, 8, 8))
    assert [r.name for r in p.layers] == ["conv", "unused", "tied", "(other)"]
    assert p.layer("conv").macs == 6_912  # 4*3*9*8*8
    assert p.layer("(other)").macs == 512  # the functional 1x1 conv: 2*4*8*8
    assert p.macs == 7_424  # 6,912 + 512
    assert p.layer("conv").params == 112  # 4*3*9 + 4
    assert p.layer("tied").params == 4  # its bias only; the tied weight counted at conv
    assert p.layer("unused").params == 12 and p.layer("unused").calls == 0
    assert p.layer("(other)").params == 12  # scale 4 + head 8
    assert p.params == 140 == params_of(net) == sum(r.params for r in p.layers)


def test_value_dependent_model_is_refused_with_a_reason():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="fake tensors, which carry shapes but no values"):
        profile(Gate(), torch.randn(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------
# compare() on a hand-built pair
# ---------------------------------------------------------------------------------------------
def plain_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, padding=1),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 16, 3, padding=1),
            bn2=nn.BatchNorm2d(16),
            relu2=nn.ReLU(),
            conv3=nn.Conv2d(16, 8, 3, padding=1),
        )
    ).eval()


def octave_net(net: nn.Sequential, alpha: float = 0.5) -> nn.Sequential:
    conv1 = OctConv2d.from_conv(net.conv1, alpha=(0.0, alpha))
    conv2 = OctConv2d.from_conv(net.conv2, alpha=alpha)
    conv3 = OctConv2d.from_conv(net.conv3, alpha=(alpha, 0.0))
    return nn.Sequential(
        OrderedDict(
            conv1=conv1,
            bn1=OctBatchNorm2d.from_bn(net.bn1, conv1.out_partition),
            relu1=OctaveDual(nn.ReLU()),
            conv2=conv2,
            bn2=OctBatchNorm2d.from_bn(net.bn2, conv2.out_partition),
            relu2=OctaveDual(nn.ReLU()),
            conv3=conv3,
        )
    ).eval()


@pytest.fixture
def pair():
    net = plain_net()
    return net, octave_net(net), torch.randn(1, 3, 32, 32)


def test_compare_hand_built_pair(pair):
    net, oct_net, x = pair
    c = compare(net, oct_net, x)
    assert isinstance(c, Comparison)
    # Before: conv1 16*3*9*1024 = 442,368; conv2 16*16*9*1024 = 2,359,296; conv3 8*16*9*1024 = 1,179,648
    assert [c.before.layer(n).macs for n in ("conv1", "conv2", "conv3")] == [442_368, 2_359_296, 1_179_648]
    assert c.before.macs == 3_981_312  # 442,368 + 2,359,296 + 1,179,648
    # After: conv1 (0, .5) = HH 8*3*9*1024 + HL 8*3*9*256 = 221,184 + 55,296 = 276,480
    #        conv2 (.5, .5) = 2,359,296 * 0.4375 = 1,032,192
    #        conv3 (.5, 0) = HH 8*8*9*1024 + LH 8*8*9*256 = 589,824 + 147,456 = 737,280
    assert [c.after.layer(n).macs for n in ("conv1", "conv2", "conv3")] == [276_480, 1_032_192, 737_280]
    assert c.after.macs == 2_045_952  # 276,480 + 1,032,192 + 737,280
    assert c.ratio("macs") == pytest.approx(2_045_952 / 3_981_312)  # 0.5139
    assert c.ratio("flops") == pytest.approx(2_045_952 / 3_981_312)
    # Feature maps, float32: before six 16x32x32 maps (65,536 B each) + conv3's 8x32x32 (32,768 B)
    assert c.before.feature_map_bytes == 425_984  # 6 * 65,536 + 32,768
    # after: six (8x32x32 + 8x16x16)*4 = 40,960 B pairs + conv3's 32,768 B
    assert c.after.feature_map_bytes == 278_528  # 6 * 40,960 + 32,768
    assert c.ratio("feature_map_bytes") == pytest.approx(278_528 / 425_984)
    # Params are tiled, not changed: 448 + 32 + 2,320 + 32 + 1,160 = 3,992
    assert c.before.params == c.after.params == 3_992 == params_of(net) == params_of(oct_net)
    assert c.ratio("params") == 1.0
    assert c.ratio("latency") is None
    # Totals equal the sums of the rows, on both sides.
    for side in (c.before, c.after):
        for key in ("macs", "flops", "params", "feature_map_bytes"):
            assert getattr(side, key) == sum(getattr(r, key) for r in side.layers), key
    # Layers matched by name, one pair per module, the octave layers as single rows.
    assert [p.name for p in c.layers] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3"]
    assert all(p.before is not None and p.after is not None for p in c.layers)
    assert c.layer("bn1").after.type == "OctBatchNorm2d"
    assert c.layer("relu1").after.output_shapes == [[1, 8, 32, 32], [1, 8, 16, 16]]
    assert c.layer("conv2").ratio("macs") == 0.4375  # 1 - 3/4 * .5 * 1.5
    assert c.layer("bn2").ratio("feature_map_bytes") == 0.625  # 1 - 3/4 * .5
    # The conv table: alphas, theory beside measurement (exact on even sizes).
    table = {r.name: r for r in c.convs}
    assert list(table) == ["conv1", "conv2", "conv3"]
    assert (table["conv1"].alpha_in, table["conv1"].alpha_out) == (0.0, 0.5)
    assert (table["conv3"].alpha_in, table["conv3"].alpha_out) == (0.5, 0.0)
    assert table["conv1"].theoretical_macs_ratio == table["conv1"].measured_macs_ratio == 0.625  # 276,480 / 442,368
    assert table["conv2"].theoretical_macs_ratio == table["conv2"].measured_macs_ratio == 0.4375
    assert table["conv3"].theoretical_macs_ratio == table["conv3"].measured_macs_ratio == 0.625  # 737,280 / 1,179,648
    assert table["conv2"].measured_feature_map_bytes_ratio == table["conv2"].theoretical_feature_map_bytes_ratio == 0.625
    assert table["conv3"].measured_feature_map_bytes_ratio == 1.0  # alpha_out = 0: one full-size output


def test_compare_unmatched_names_keep_their_place():
    a = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), head=nn.Conv2d(4, 2, 1)))
    b = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), extra=nn.ReLU(), head=nn.Conv2d(4, 2, 1)))
    c = compare(a, b, torch.randn(1, 3, 8, 8))
    assert [p.name for p in c.layers] == ["conv", "extra", "head"]
    assert c.layer("extra").before is None and c.layer("extra").ratio("macs") is None
    assert c.convs == []


# ---------------------------------------------------------------------------------------------
# to_dict() schemas
# ---------------------------------------------------------------------------------------------
LAYER_KEYS = {"name": str, "type": str, "calls": int, "output_shapes": list, "params": int, "macs": int,
              "flops": int, "feature_map_bytes": int}
PROFILE_KEYS = {"schema_version": int, "kind": str, "model": str, "inputs": list, "batch": int, "conventions": dict,
                "macs": int, "flops": int, "params": int, "feature_map_bytes": int, "latency": type(None), "layers": list}


def check_profile_dict(d: dict) -> None:
    assert set(d) == set(PROFILE_KEYS)
    for key, kind in PROFILE_KEYS.items():
        assert isinstance(d[key], kind), key
    assert d["schema_version"] == 1 and d["kind"] == "octify.profile"
    assert set(d["conventions"]) >= {"macs", "flops", "not_counted", "feature_map_bytes", "params", "counting"}
    for row in d["layers"]:
        assert set(row) == set(LAYER_KEYS)
        for key, kind in LAYER_KEYS.items():
            assert isinstance(row[key], kind), key
        assert all(isinstance(s, list) and all(isinstance(i, int) for i in s) for s in row["output_shapes"])


def test_profile_to_dict_schema(pair):
    net, _, x = pair
    d = profile(net, x).to_dict()
    check_profile_dict(d)
    assert d["inputs"] == [{"shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert d["macs"] == 3_981_312 and d["params"] == 3_992
    assert json.loads(json.dumps(d)) == d


def test_comparison_to_dict_schema(pair):
    net, oct_net, x = pair
    d = compare(net, oct_net, x).to_dict()
    assert {"schema_version", "kind", "inputs", "batch", "conventions", "before", "after", "ratios", "layers", "convs"} <= set(d)
    assert d["schema_version"] == 1 and d["kind"] == "octify.comparison"
    for side in ("before", "after"):
        check_profile_dict(d[side])
        for key in ("macs", "flops", "params", "feature_map_bytes"):
            assert isinstance(d[side][key], int)
        assert isinstance(d[side]["layers"], list)
    assert d["before"]["macs"] == 3_981_312 and d["after"]["macs"] == 2_045_952
    assert set(d["ratios"]) == {"macs", "flops", "params", "feature_map_bytes", "latency"}
    assert d["ratios"]["latency"] is None and d["ratios"]["params"] == 1.0
    pair_keys = {"name", "type_before", "type_after"} | {
        f"{k}_{s}" for k in ("macs", "flops", "params", "feature_map_bytes") for s in ("before", "after", "ratio")
    }
    assert all(set(r) == pair_keys for r in d["layers"])
    conv_keys = {"name", "alpha_in", "alpha_out", "octave", "depthwise", "macs_before", "macs_after",
                 "measured_macs_ratio", "theoretical_macs_ratio", "feature_map_bytes_before", "feature_map_bytes_after",
                 "measured_feature_map_bytes_ratio", "theoretical_feature_map_bytes_ratio"}
    assert [set(r) for r in d["convs"]] == [conv_keys] * 3
    assert d["convs"][1]["theoretical_macs_ratio"] == 0.4375
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def test_profile_renders(pair):
    net, _, x = pair
    p = profile(net, x)
    text = render(p)
    assert "Sequential, input 1x3x32x32 float32 (batch 1)" in text
    macs = next(line for line in text.splitlines() if line.startswith("MACs "))
    assert "3.98 M" in macs and "3,981,312" in macs
    assert "7,962,624" in text  # FLOPs: 2 * 3,981,312
    assert "3,992" in text  # params
    assert "How octify counts: octify convert --help" in text  # a pointer, not the whole conventions
    assert "FlopCounterMode" not in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "3.98 M" in total and "100%" in total
    layers = render(p.layer_table())
    conv2 = next(line for line in layers.splitlines() if line.startswith("conv2 "))
    for cell in ("Conv2d", "1x16x32x32", "2.32 K", "2.36 M", "64.00 KiB"):
        assert cell in conv2
    assert "relu" not in layers and "without MACs or parameters are not listed" in layers
    # str(): the summary, in plain text; a flat model's stages are its convs with what follows each
    assert "3,981,312" in str(p) and "1x16x32x32" not in str(p)
    stage = next(line for line in str(p).splitlines() if line.startswith("conv2..relu2 "))
    assert "2.36 M" in stage and "59%" in stage  # 2,359,296 / 3,981,312
    assert "\x1b[" not in str(p)


def test_comparison_renders(pair):
    net, oct_net, x = pair
    c = compare(net, oct_net, x)
    text = render(c)
    assert "Sequential -> Sequential, input 1x3x32x32" in text
    macs = next(line for line in text.splitlines() if line.startswith("MACs "))
    assert "3.98 M" in macs and "2.05 M" in macs and "0.514" in macs  # 2,045,952 / 3,981,312
    maps = next(line for line in text.splitlines() if line.startswith("Feature maps"))
    assert "416.00 KiB" in maps and "0.625" not in maps  # 425,984 B before
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert "3/3" in total and "0.514" in total  # all three convs are octave
    layers = render(c.layer_table())
    conv2 = next(line for line in layers.splitlines() if line.startswith("conv2 "))
    for cell in ("OctConv2d", "0.5/0.5", "2.36 M", "1.03 M", "0.438"):
        assert cell in conv2
    conv1 = next(line for line in layers.splitlines() if line.startswith("conv1 "))
    assert "0/0.5" in conv1 and "0.625" in conv1  # 276,480 / 442,368
    assert "bn1" not in layers  # no MACs: in --json, not in the table


# ---------------------------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------------------------
def test_latency_profile_and_compare(pair):
    net, oct_net, x = pair
    net.train()
    threads = torch.get_num_threads()
    p = profile(net, x, latency=True, runs=3, warmup=1, threads=1)
    assert p.latency is not None and p.latency.runs == 3 and len(p.latency.times_ms) == 3
    assert p.latency.threads == 1 and torch.get_num_threads() == threads  # stated, then restored
    assert p.latency.median_ms > 0
    assert net.training  # timed in eval mode, the mode restored
    lat = p.latency
    assert lat.min_ms <= lat.median_ms <= lat.max_ms and lat.min_ms == min(lat.times_ms)
    assert f"Latency: min {lat.min_ms:.2f} / median {lat.median_ms:.2f} / max {lat.max_ms:.2f} ms of 3 runs" in render(p)
    assert "1 thread," in render(p)
    c = compare(net, oct_net, x, latency=True, runs=3, warmup=1)
    assert c.before.latency is not None and c.after.latency is not None
    assert c.ratio("latency") == pytest.approx(c.after.latency.median_ms / c.before.latency.median_ms)
    assert "Latency (median)" in render(c) and "Latency: before min" in render(c)
    json.dumps(c.to_dict())


def test_progress_bar_only_on_a_terminal(pair):
    net, _, x = pair
    plain = Console(file=io.StringIO(), width=120)
    profile(net, x, latency=True, runs=2, warmup=0, console=plain)
    assert plain.file.getvalue() == ""  # not a terminal: no progress bar
    tty = Console(file=io.StringIO(), width=120, force_terminal=True)
    profile(net, x, latency=True, runs=2, warmup=0, console=tty)
    assert "timing" in tty.file.getvalue()


def test_exported_from_octify():
    for name in ("profile", "compare", "Profile", "Comparison"):
        assert name in octify.__all__ and hasattr(octify, name)
