"""Tests of octify.convert: the octave=1 oracle on random CNNs, the API contract (modes, names,
the record, merges), the converted model as an ordinary module (state_dict, save/load, deepcopy,
training), errors, and the official Oct-ResNet-50 policy.

The oracle: with ``octave=1`` the low grid is the high grid and nothing is resampled, so a
converted model in eval mode computes exactly what the original computes, whatever the alpha,
the partitions, the merges, splits and aligns the pass inserted. Only the summation order of
the conv paths differs: max|diff| / max|y| <= 1e-4.
"""

from __future__ import annotations

import collections
import copy
import io
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import octify
from octify.nn import OctBatchNorm2d, OctConv2d
from octify.rules import per_branch

from conftest import SpecNet, cnn_specs, randomize_bn, rel_err

RTOL = 1e-4


def conv_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# =============================================================================================
# 1. Random CNNs: the octave=1 oracle, and octave=2 runs
# =============================================================================================
def _check_record(gm: torch.fx.GraphModule, model: nn.Module) -> None:
    rec = octify.record_of(gm)
    # One record per Conv2d of the original, under its qualified name.
    assert sorted(c.name for c in rec.convs) == sorted(conv_names(model))
    for c in rec.convs:
        sub = gm.get_submodule(c.name)
        if c.converted:
            assert isinstance(sub, OctConv2d), c
        else:
            assert type(sub) is nn.Conv2d and c.alpha_in == c.alpha_out == 0.0, c
    # The four paths tile the original weights: the same parameter count.
    assert n_params(gm) == n_params(model)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    spec=cnn_specs(),
    alpha=st.floats(0.125, 0.75),
    min_size=st.sampled_from([1, 4, 8]),
    stride_mode=st.sampled_from(["conv", "pool"]),
    seed=st.integers(0, 2**16),
)
def test_random_cnn_octave1_oracle_and_octave2_runs(spec, alpha, min_size, stride_mode, seed):
    torch.manual_seed(seed)
    model = SpecNet(spec).eval()
    randomize_bn(model, seed)
    x = torch.randn(2, 3, *spec["hw"])
    with torch.no_grad():
        y = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # merges in front of ops without a rule are expected here
        gm1 = octify.convert(model, alpha, example_inputs=x, octave=1, min_size=min_size)
        gm2 = octify.convert(model, alpha, example_inputs=x, octave=2, min_size=min_size, stride_mode=stride_mode)
    assert not gm1.training and not gm2.training
    with torch.no_grad():
        y1 = gm1(x)
        y2 = gm2(x)
    assert y1.shape == y.shape
    assert rel_err(y1, y) <= RTOL
    assert y2.shape == y.shape
    assert torch.isfinite(y2).all()
    _check_record(gm1, model)
    _check_record(gm2, model)


def test_oracle_holds_with_octave_layers_in_the_middle():
    """A fixed case of the property with pairs everywhere (min_size=1): the oracle is not
    vacuously met by a model that merged everything back."""
    spec = {
        "hw": (17, 23),
        "blocks": [
            {"kind": "conv", "k": 3, "s": 1, "out": 16, "groups": 1, "pad": 1, "bias": True, "bn": True, "act": "relu",
             "functional": False, "out_c": 16},
            {"kind": "res", "k": 3, "s": 2, "out": 24, "groups": 2, "bias": True, "act": "silu", "proj": True, "out_c": 24},
            {"kind": "se", "r": 6, "mean": False, "hard": False, "out_c": 24},
            {"kind": "conv", "k": 3, "s": 1, "out": 24, "groups": 24, "pad": "same", "bias": False, "bn": True,
             "act": "hardswish", "functional": True, "out_c": 24},
            {"kind": "cat", "widths": [6, 10], "identity": True, "bias": False, "out_c": 40},
            {"kind": "pool", "k": 3, "pad": 1, "max": True, "module": False, "out_c": 40},
        ],
        "head": True,
        "classes": 5,
    }
    torch.manual_seed(0)
    model = SpecNet(spec).eval()
    randomize_bn(model, 0)
    x = torch.randn(2, 3, 17, 23)
    gm = octify.convert(model, 0.375, example_inputs=x, octave=1, min_size=1)
    rec = octify.record_of(gm)
    assert rec.count("merge") == 0
    assert len(rec.converted) == len(rec.convs) - 1  # all but the stem
    assert rel_err(gm(x), model(x)) <= RTOL
    gm2 = octify.convert(model, 0.375, example_inputs=x, octave=2, min_size=1)
    # At octave 2 the low branches really are at half resolution: the output differs.
    assert rel_err(gm2(x), model(x)) > 1e-3


def test_conv_whose_kernel_does_not_fit_the_low_branch_sees_the_merged_tensor():
    """Found by the property test: a padding-0 5x5 conv planned alpha_out 0 (output below
    min_size) received a pair whose 6x4 low branch is narrower than the kernel; the L->H path
    could not run and conversion crashed. The pair is now merged in front of it."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),  # 21x16 -> 11x8: a pair with a 6x4 low branch
        nn.Conv2d(8, 8, 5, stride=2, padding=0),  # 11x8 -> 4x2
    ).eval()
    x = torch.randn(1, 3, 21, 16)
    gm = octify.convert(net, 0.5, example_inputs=x)
    rec = octify.record_of(gm)
    assert [m.kind for m in rec.merges] == ["merge"]
    assert "does not fit the 6x4 low branch" in rec.merges[0].reason
    assert gm(x).shape == net(x).shape == (1, 8, 4, 2)
    assert rel_err(octify.convert(net, 0.5, example_inputs=x, octave=1)(x), net(x)) <= RTOL


# =============================================================================================
# 2. API behaviour
# =============================================================================================
X64 = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    randomize_bn(model, 0)
    return model


@pytest.fixture(scope="module")
def resnet18_oct(resnet18):
    return octify.convert(resnet18, 0.5, example_inputs=X64)


@pytest.fixture(scope="module")
def resnet18_oct_y(resnet18_oct):
    with torch.no_grad():
        return resnet18_oct(X64)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(self.stem(x)))))


def _snapshot(model: nn.Module) -> tuple:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    flags = {name: m.training for name, m in model.named_modules()}
    types = {name: type(m) for name, m in model.named_modules()}
    return state, flags, types


def _same_snapshot(a: tuple, b: tuple) -> bool:
    return (
        a[0].keys() == b[0].keys()
        and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
        and a[1] == b[1]
        and a[2] == b[2]
    )


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_mode_is_kept_and_input_model_untouched(mode):
    torch.manual_seed(0)
    model = Small()
    model.train(mode != "eval")
    if mode == "mixed":
        model.bn.eval()  # a frozen batch norm inside a training model
    x = torch.randn(2, 3, 16, 16)
    before = _snapshot(model)
    assert before[0]["bn.num_batches_tracked"].item() == 0
    gm = octify.convert(model, 0.5, example_inputs=x)
    assert _same_snapshot(before, _snapshot(model))  # parameters, buffers, counters, flags, types
    assert gm.training == (mode != "eval")
    assert isinstance(gm.get_submodule("conv"), OctConv2d)
    assert isinstance(gm.get_submodule("bn"), OctBatchNorm2d)
    for name in ("stem", "conv", "bn", "head"):
        assert gm.get_submodule(name).training == model.get_submodule(name).training, name
    assert gm.get_submodule("bn").bn_h.training == (mode == "train")
    # The converted model's weights are copies: training it leaves the original alone.
    gm(x).sum().backward()
    with torch.no_grad():
        for p in gm.parameters():
            p.add_(1.0)
    assert _same_snapshot(before, _snapshot(model))


def test_inplace_reuses_the_input_modules():
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.randn(1, 3, 16, 16)
    y = model(x)
    stem_weight = model.stem.weight
    gm = octify.convert(model, 0.5, example_inputs=x, octave=1, inplace=True)
    assert isinstance(model.conv, OctConv2d)  # the model itself was rewritten
    assert gm.get_submodule("stem").weight is stem_weight
    assert gm.get_submodule("conv") is model.conv
    assert rel_err(gm(x), y) <= RTOL


def test_resnet18_names_and_record(resnet18, resnet18_oct):
    gm, rec = resnet18_oct, octify.record_of(resnet18_oct)
    assert isinstance(gm.get_submodule("layer1.0.conv1"), OctConv2d)
    assert isinstance(gm.get_submodule("layer1.0.bn1"), OctBatchNorm2d)
    assert isinstance(gm.get_submodule("layer2.0.downsample.0"), OctConv2d)
    assert type(gm.get_submodule("conv1")) is nn.Conv2d
    by = {c.name: c for c in rec.convs}
    assert len(by) == 20 == len(conv_names(resnet18))
    assert "stem" in by["conv1"].plain_reason and not by["conv1"].converted
    c = by["layer1.0.conv1"]
    assert (c.alpha_in, c.alpha_out, c.converted) == (0.0, 0.5, True)
    assert c.in_shape == (1, 64, 16, 16) and c.out_shape == (1, 64, 16, 16)
    assert (by["layer1.0.conv2"].alpha_in, by["layer1.0.conv2"].alpha_out) == (0.5, 0.5)
    assert (by["layer2.0.conv1"].alpha_in, by["layer2.0.conv1"].alpha_out) == (0.5, 0.5)
    # 8x8 -> 4x4 at layer3: the octave merges back inside the first block (alpha_out 0).
    assert (by["layer3.0.conv1"].alpha_in, by["layer3.0.conv1"].alpha_out, by["layer3.0.conv1"].converted) == (0.5, 0.0, True)
    assert by["layer3.0.conv2"].plain_reason == "output 4x4 below min_size 8"
    for name, r in by.items():
        if name.startswith("layer4"):  # 2x2 maps
            assert r.alpha_out == 0.0 and r.plain_reason == "output 2x2 below min_size 8", r
            assert type(gm.get_submodule(name)) is nn.Conv2d
    assert len(rec.converted) == 11
    # The only plumbing: the identity shortcut of layer1.0 (plain, after the max pool) is split
    # to be added to the pair of layer1.0.bn2.
    assert [(m.kind, m.node, m.target) for m in rec.merges] == [("split", "add", "operator.add")]
    assert rec.threaded == {"BatchNorm2d": 9, "ReLU": 8, "operator.add": 4}


def test_reasons_exclude_and_alpha_for(resnet18):
    x = X64
    gm = octify.convert(resnet18, 0.5, example_inputs=x, exclude=["layer1.*"], alpha_for={"layer3*": 0.0})
    by = {c.name: c for c in octify.record_of(gm).convs}
    for name in ("layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"):
        assert by[name].plain_reason == "excluded" and type(gm.get_submodule(name)) is nn.Conv2d
    # layer2.0 now starts the octave (its input is plain).
    assert (by["layer2.0.conv1"].alpha_in, by["layer2.0.conv1"].alpha_out) == (0.0, 0.5)
    assert by["layer3.0.conv2"].plain_reason == "alpha_for sets alpha 0"
    # layer3.0.conv1 gets a pair and gives a plain tensor: converted, alpha_out 0.
    assert (by["layer3.0.conv1"].alpha_in, by["layer3.0.conv1"].alpha_out, by["layer3.0.conv1"].plain_reason) == (0.5, 0.0, None)

    seen = []

    def policy(name, conv, out_shape):
        seen.append((name, type(conv), out_shape))
        return 0.25 if name.startswith("layer2") else None

    rec = octify.record_of(octify.convert(resnet18, 0.5, example_inputs=x, alpha_for=policy))
    by = {c.name: c for c in rec.convs}
    assert by["layer2.0.conv1"].alpha_out == 0.25 and by["layer2.1.conv2"].alpha_out == 0.25
    assert by["layer1.1.conv2"].alpha_out == 0.5
    assert ("layer2.0.conv1", nn.Conv2d, (1, 128, 8, 8)) in seen
    assert "conv1" not in {s[0] for s in seen}  # the stem is decided before the policy

    with pytest.raises(ValueError, match="alpha_for gave alpha=2"):
        octify.convert(resnet18, 0.5, example_inputs=x, alpha_for=lambda n, c, s: 2)


def test_too_narrow_conv_stays_plain():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1), nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
    ).eval()
    x = torch.randn(1, 3, 16, 16)
    gm = octify.convert(net, 0.5, example_inputs=x, octave=1)
    by = {c.name: c for c in octify.record_of(gm).convs}
    assert by["1"].plain_reason == "too narrow to split (1 channels per group at alpha 0.5)"
    assert type(gm.get_submodule("1")) is nn.Conv2d
    assert (by["2"].alpha_in, by["2"].alpha_out) == (0.0, 0.5)
    assert (by["3"].alpha_in, by["3"].alpha_out) == (0.5, 0.0)  # the last layer: a plain, full-resolution output
    assert rel_err(gm(x), net(x)) <= RTOL


class Permuting(nn.Module):
    """Two ops without an octave rule (.permute() twice, torch.flatten once) on pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        x = self.c2(self.c1(x))
        a = x.permute(0, 1, 3, 2)
        b = self.c3(x).permute(0, 1, 3, 2)
        c = torch.flatten(self.c4(x), 1)
        return a.sum((1, 2, 3)) + b.sum((1, 2, 3)) + c.sum(1)


def test_merges_recorded_and_warned_once_per_op_kind():
    model = Permuting().eval()
    x = torch.randn(2, 3, 16, 12)
    with pytest.warns(UserWarning) as caught:
        gm = octify.convert(model, 0.5, example_inputs=x, octave=1)
    msgs = [str(w.message) for w in caught if "octify" in str(w.message)]
    # The flatten to (N, features) is a classifier head's: its merge is expected, recorded, not warned about.
    assert msgs == ["octify: .permute() has no octave rule; the pair is merged back to a plain tensor before it"]
    rec = octify.record_of(gm)
    assert [(m.kind, m.node, m.target, m.reason) for m in rec.merges] == [
        ("merge", "permute", ".permute()", "no octave rule for .permute()"),
        ("merge", "permute_1", ".permute()", "no octave rule for .permute()"),
        ("merge", "flatten", "torch.flatten", "torch.flatten flattens each sample to a vector (a classifier's head): merged, as expected"),
    ]
    assert rec.count("merge") == 3
    assert rel_err(gm(x), model(x)) <= RTOL


# =============================================================================================
# 3. The converted model is an ordinary module
# =============================================================================================
@torch.no_grad()
def test_state_dict_loads_into_a_fresh_conversion(resnet18, resnet18_oct, resnet18_oct_y):
    y = resnet18_oct_y
    fresh = octify.convert(resnet18, 0.5, example_inputs=X64, transfer_weights=False)
    assert not torch.equal(fresh.get_submodule("layer1.0.conv1").weight_hh, resnet18_oct.get_submodule("layer1.0.conv1").weight_hh)
    result = fresh.load_state_dict(resnet18_oct.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh(X64), y)


@torch.no_grad()
def test_deepcopy_and_torch_save_load(resnet18_oct, resnet18_oct_y):
    gm, y = resnet18_oct, resnet18_oct_y
    dup = copy.deepcopy(gm)
    assert torch.equal(dup(X64), y)
    assert octify.record_of(dup).to_dict() == octify.record_of(gm).to_dict()
    buf = io.BytesIO()
    torch.save(gm, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(X64), y)
    assert isinstance(loaded.get_submodule("layer1.0.conv1"), OctConv2d)
    assert octify.record_of(loaded).to_dict() == octify.record_of(gm).to_dict()
    assert not loaded.training
    # ... and a copy saved again.
    buf = io.BytesIO()
    torch.save(dup, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert torch.equal(again(X64), y)
    assert octify.record_of(again).count("split") == 1


def test_training_step_updates_every_parameter(resnet18):
    model = copy.deepcopy(resnet18).train()
    gm = octify.convert(model, 0.5, example_inputs=X64)
    assert gm.training
    before = {k: p.detach().clone() for k, p in gm.named_parameters()}
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    target = torch.tensor([1, 7])
    x = torch.randn(2, 3, 64, 64)
    loss = F.cross_entropy(gm(x), target)
    loss.backward()
    opt.step()
    octs = [n for n, m in gm.named_modules() if isinstance(m, OctConv2d)]
    assert len(octs) == 11
    for name, p in gm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert not torch.equal(p.detach(), before[name]), name
    for name in octs:
        assert all(not torch.equal(p.detach(), before[f"{name}.{k}"]) for k, p in gm.get_submodule(name).named_parameters())
    # BN running statistics moved too (train mode).
    assert gm.get_submodule("layer1.0.bn1").bn_l.num_batches_tracked.item() == 1


# =============================================================================================
# 4. Errors, leaf modules and rules
# =============================================================================================
class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value: torch.fx cannot trace it
            return self.conv(x)
        return x


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gate = Gate()
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.c3(self.gate(self.c2(self.stem(x))))


def test_untraceable_module_names_it_and_leaf_modules():
    torch.manual_seed(0)
    model = Gated().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(octify.ConversionError) as err:
        octify.convert(model, example_inputs=x)
    msg = str(err.value)
    assert "'gate' (Gate)" in msg and "leaf_modules" in msg


@pytest.mark.parametrize("leaf", [Gate, "gate", "ga*"])
def test_leaf_module_converts_around_it(leaf):
    """The leaf's forward reads a tensor value: shape propagation runs it on real tensors."""
    torch.manual_seed(0)
    model = Gated().eval()
    for x in (torch.randn(1, 3, 16, 16), -torch.ones(1, 3, 16, 16)):
        with pytest.warns(UserWarning, match="Gate has no octave rule"):
            gm = octify.convert(model, 0.5, example_inputs=x, leaf_modules=[leaf], octave=1)
        by = {c.name: c for c in octify.record_of(gm).convs}
        assert by["gate.conv"].plain_reason == "inside leaf module gate"
        assert type(gm.get_submodule("gate")) is Gate and type(gm.get_submodule("gate.conv")) is nn.Conv2d
        assert isinstance(gm.get_submodule("c2"), OctConv2d)
        # c3 gets the merged (plain) tensor and, as the last layer, gives a plain output: it stays a Conv2d.
        assert type(gm.get_submodule("c3")) is nn.Conv2d and by["c3"].plain_reason.startswith("its output reaches a model output")
        assert octify.record_of(gm).merges[0].node == "gate"
        for probe in (x, torch.randn(2, 3, 16, 16)):
            assert rel_err(gm(probe), model(probe)) <= RTOL


@pytest.mark.parametrize("alpha, exc", [(1.5, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("x", TypeError), (True, TypeError)])
def test_bad_alpha(alpha, exc):
    with pytest.raises(exc, match="alpha"):
        octify.convert(Small(), alpha, example_inputs=torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("alpha_for", [{"c*": 1.5}, {"c*": "half"}])
def test_bad_alpha_for(alpha_for):
    with pytest.raises((ValueError, TypeError), match=r"alpha_for\['c\*'\]"):
        octify.convert(Small(), 0.5, example_inputs=torch.randn(1, 3, 8, 8), alpha_for=alpha_for)


@pytest.mark.parametrize("inputs", ["abc", 3, {1: torch.ones(1)}, []])
def test_example_inputs_of_the_wrong_type(inputs):
    with pytest.raises(TypeError, match="example_inputs"):
        octify.convert(Small(), example_inputs=inputs)


def test_example_inputs_as_a_dict_need_a_tensor():
    with pytest.raises(ValueError, match=r"example_inputs must hold at least one Tensor, found none in \['x'\]"):
        octify.convert(Small(), example_inputs={"x": 1})


def test_example_inputs_with_wrong_channels_names_the_node():
    with pytest.raises(octify.ConversionError) as err:
        octify.convert(Small(), example_inputs=torch.randn(1, 4, 16, 16))
    msg = str(err.value)
    assert "%stem : [num_users=1] = call_module[target=stem]" in msg
    assert "expected input[1, 4, 16, 16] to have 3 channels" in msg


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class SwishNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = Swish()
        self.relu = nn.ReLU()
        self.c3 = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        return self.c3(self.relu(self.act(self.c2(self.c1(x))))).mean((2, 3))


def test_user_rule_removes_a_merge_and_none_removes_a_builtin():
    torch.manual_seed(0)
    model = SwishNet().eval()
    x = torch.randn(1, 3, 12, 12)
    # Without a rule torch.fx traces through Swish: mul and sigmoid have rules, no merge.
    rec = octify.record_of(octify.convert(model, example_inputs=x))
    assert rec.count("merge") == 0 and rec.threaded.get("torch.sigmoid") == 1
    # As a leaf, Swish has no rule: a merge; a user rule takes it away.
    with pytest.warns(UserWarning, match="Swish has no octave rule"):
        gm = octify.convert(model, example_inputs=x, leaf_modules=[Swish], octave=1)
    assert [(m.kind, m.node) for m in octify.record_of(gm).merges] == [("merge", "act")]
    assert rel_err(gm(x), model(x)) <= RTOL
    gm = octify.convert(model, example_inputs=x, rules={Swish: per_branch}, octave=1)
    rec = octify.record_of(gm)
    assert rec.count("merge") == 0 and rec.threaded["Swish"] == 1
    assert rel_err(gm(x), model(x)) <= RTOL
    # rules={key: None} drops the built-in rule for ReLU: the pair is merged before it.
    with pytest.warns(UserWarning, match="ReLU has no octave rule"):
        gm = octify.convert(model, example_inputs=x, rules={nn.ReLU: None}, octave=1)
    rec = octify.record_of(gm)
    assert [(m.kind, m.node, m.reason) for m in rec.merges] == [("merge", "relu", "no octave rule for ReLU")]
    assert rel_err(gm(x), model(x)) <= RTOL
    # ... for that call only: the registry is unchanged.
    assert octify.record_of(octify.convert(model, example_inputs=x)).count("merge") == 0


def test_register_rule_rejects_a_duplicate():
    from octify import rules as rules_mod

    with pytest.raises(ValueError, match="already registered"):
        octify.register_rule(nn.ReLU)(per_branch)

    class Local(nn.Module):
        def forward(self, x):
            return x * 2

    try:
        octify.register_rule(Local)(per_branch)
        with pytest.raises(ValueError, match="already registered"):
            octify.register_rule(Local)(per_branch)
    finally:
        rules_mod._REGISTRY.pop(Local, None)


def test_the_registry_loads_the_builtin_rules_itself():
    # In a fresh interpreter that imports only octify.rules: no import of octify.convert first.
    code = (
        "import torch.nn as nn, octify.rules as r\n"
        "reg = r.registry()\n"
        "print(len(reg), nn.Conv2d in reg, nn.ReLU in reg)\n"
        "try:\n"
        "    r.register_rule(nn.ReLU)(r.per_branch)\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    count, conv, relu = out[0].split()
    assert int(count) > 100 and (conv, relu) == ("True", "True")
    assert out[1] == "an octave rule for ReLU is already registered (per_branch)"


# =============================================================================================
# 5. The official policy, and merge-free zoo models
# =============================================================================================
def fake_macs(model: nn.Module, shape=(1, 3, 224, 224)) -> int:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(*shape)
        with FlopCounterMode(display=False) as counter:
            model(x)
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def resnet50():
    return torchvision.models.resnet50(weights=None).eval()


@pytest.mark.slow
def test_official_oct_resnet50_policy(resnet50):
    gm = octify.convert(resnet50, 0.5, stride_mode="pool", alpha_for={"layer4*": 0.0})
    assert fake_macs(resnet50) == 4_089_184_256
    macs = fake_macs(gm)
    assert abs(macs / 2.37e9 - 1) < 0.03, macs  # the paper's Oct-ResNet-50 (alpha 0.5): 2.37 GMACs
    rec = octify.record_of(gm)
    layer4 = [c for c in rec.convs if c.name.startswith("layer4")]
    assert len(layer4) == 10 and all(c.alpha_out == 0.0 for c in layer4)
    # The octave merges back in the first block of the last stage: its conv1 and projection.
    assert {c.name for c in layer4 if c.alpha_in > 0} == {"layer4.0.conv1", "layer4.0.downsample.0"}
    assert gm.get_submodule("layer2.0.conv2").stride_mode == "pool"
    assert rec.count("merge") == rec.count("split") == rec.count("align") == 0


@pytest.mark.slow
def test_resnet50_default_has_no_plumbing(resnet50):
    rec = octify.record_of(octify.convert(resnet50))
    assert (rec.count("merge"), rec.count("split"), rec.count("align")) == (0, 0, 0)
    assert len(rec.convs) == 53 and len(rec.converted) == 45
    assert {c.plain_reason for c in rec.plain} == {"stem (first conv on the model input)", "output 7x7 below min_size 8"}


def test_mobilenet_v3_large_record():
    model = torchvision.models.mobilenet_v3_large(weights=None).eval()
    rec = octify.record_of(octify.convert(model))
    counts = collections.Counter(m.kind for m in rec.merges)
    # One split: features.1's residual adds the plain stem output to the pair of its projection.
    assert counts == {"split": 1}
    assert [(m.node, m.target) for m in rec.merges] == [("add", "operator.add")]
    assert rec.count("merge") == 0
    # SE blocks: global pooling of the pair, plain FCs (1x1 < min_size), per-branch rescale.
    assert rec.threaded["AdaptiveAvgPool2d"] == rec.threaded["operator.mul"] == 5
    assert len(rec.convs) == 62 and len(rec.converted) == 37
