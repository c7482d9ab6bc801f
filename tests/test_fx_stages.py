"""Unit tests of the conversion pass, stage by stage (``octify.fx``), on small hand-written models.

Each stage is run on graphs of a few convs (8-16 channels, 16x16 inputs): the tracer (leaf
modules, untraceable models), shape propagation, the plan (every reason a conv keeps alpha 0 or
stays plain), the options, the rewrite with its rules (merges, splits, aligns, user rules), the
conv -> batch norm fusion, the in-place sums and the final verification. Every model here is
also held to the oracle: at ``octave=1`` the converted model computes what the original does.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
import re
import warnings

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

import octify
import octify.rules
from conftest import randomize_bn, rel_err
from octify.fx.fold import bn_affine, conv_bn_pairs, fold_affine
from octify.fx.fuse import conv_bn, unfuse_conv_bn
from octify.fx.inplace import inplace_adds
from octify.options import ConvertOptions
from octify.fx.plan import plan
from octify.fx.shape_prop import fake_mode, fakeify, propagate
from octify.errors import OptionError, OptionTypeError
from octify.fx.stages import PassState, run_stages
from octify.replay import replay_options
from octify.fx.tracer import split_leaf_specs, trace
from octify.fx.verify import verify
from octify.nn import ChannelMerge, OctaveMerge, OctaveSplit, OctBatchNorm2d, OctConv2d, Realign
from octify.record import MergeRecord
from octify.rules import Decline, per_branch

ATOL = RTOL = 1e-5


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


X = (2, 3, 16, 16)  # the input shape of every model below


# =============================================================================================
# Small models
# =============================================================================================
class Chain(nn.Module):
    """stem -> conv1 -> bn1 -> relu -> conv2: the plainest octave chain."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.relu(self.bn1(self.conv1(self.stem(x)))))


class FuseNet(nn.Module):
    """Two conv -> batch norm pairs: a plain one (the stem's) and an octave one."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)

    def forward(self, x):
        y = F.relu(self.bn0(self.stem(x)))
        return self.conv2(F.relu(self.bn1(self.conv1(y))))


class Flip(nn.Module):
    """A pair through torch.flip, which has no octave rule."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.flip(self.conv1(self.stem(x)), [3]))


class TwoFlips(Flip):
    """One pair read by two ops without a rule: merged once, warned once."""

    def forward(self, x):
        y = self.conv1(self.stem(x))
        return self.conv2(torch.flip(y, [3]) + torch.flip(y, [2]))


class TwoBranches(nn.Module):
    """Two octave convs summed: with different alphas their partitions differ (an align)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        return self.head(self.conv_a(y) + self.conv_b(y))


class Residual(nn.Module):
    """A pair plus the plain stem map (a split of the plain operand)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.stem(x)
        return self.head(self.conv1(y) + y)


class Grouped(nn.Module):
    """A conv feeding a grouped conv through bn and relu, then global pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.gconv = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.gconv(self.relu(self.bn(self.conv1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(y), 1))


class DWBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.pw = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.pw2 = nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        return self.pw2(self.dw(self.pw(x)))


class Depthwise(nn.Module):
    """A block holding a depthwise conv, then a wide head conv outside any block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(DWBlock(16))
        self.head = nn.Conv2d(16, 64, 3, padding=1)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


class Shapes(nn.Module):
    """Convs for the plan's size rules: a stride-2 conv (8x8 output) and a 3-channel conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.narrow = nn.Conv2d(8, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.head(self.narrow(self.down(self.conv1(self.stem(x)))))


class Gate(nn.Module):
    """A user module that torch.fx would otherwise inline (a mul and a sigmoid)."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.gate = Gate()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.gate(self.conv1(self.stem(x))))


class Branchy(nn.Module):
    """Branches on a tensor value: torch.fx cannot trace it. Holds a conv of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return -x


class WithBranchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bad = Branchy()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.bad(self.conv1(self.stem(x))))


def _make(cls: type, seed: int = 0) -> nn.Module:
    """``cls()`` with seeded random weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    return randomize_bn(cls(), seed).eval()


def _traced(model: nn.Module, *inputs: torch.Tensor) -> fx.GraphModule:
    """Stages 1 and 2: the traced graph with every node's fake value."""
    gm = trace(model, (), ())
    fm = fake_mode()
    propagate(gm, fm, fakeify(fm, inputs))
    return gm


def _plan(model: nn.Module, x: torch.Tensor, **kw) -> dict:
    """Stage 3 on ``model``: {conv name: ConvPlan}."""
    gm = _traced(model, x)
    args = dict(alpha=0.5, octave=2, stride_mode="conv", min_size=8, exclude=(), alpha_for=None)
    args.update(kw)
    return {str(node.target): p for node, p in plan(gm, **args).items()}


def _nodes(gm: fx.GraphModule, op: str, target=None) -> list:
    return [n for n in gm.graph.nodes if n.op == op and (target is None or n.target == target)]


def _convert_quiet(model: nn.Module, x: torch.Tensor, **kw) -> fx.GraphModule:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="octify: .* has no octave rule")
        return octify.convert(model, example_inputs=x, **kw)


# =============================================================================================
# 1. Trace
# =============================================================================================
def test_gate_is_inlined_without_leaf_spec():
    gm = trace(Gated(), (), ())
    assert [n.target for n in _nodes(gm, "call_module")] == ["stem", "conv1", "conv2"]
    assert len(_nodes(gm, "call_function", torch.sigmoid)) == 1
    assert len(_nodes(gm, "call_function", operator.mul)) == 1


@pytest.mark.parametrize("leaf_types, leaf_globs", [((Gate,), ()), ((), ("ga*",))], ids=["type", "glob"])
def test_user_leaf_module_is_one_call_module_node(leaf_types, leaf_globs):
    gm = trace(Gated(), leaf_types, leaf_globs)
    assert [n.target for n in _nodes(gm, "call_module")] == ["stem", "conv1", "gate", "conv2"]
    assert _nodes(gm, "call_function") == []  # no sigmoid, no mul: the gate is whole
    gate = _nodes(gm, "call_module", "gate")[0]
    assert gate.args == (_nodes(gm, "call_module", "conv1")[0],)


def test_split_leaf_specs():
    assert split_leaf_specs([Gate, "body.*", nn.ReLU, "gate"]) == ((Gate, nn.ReLU), ("body.*", "gate"))
    assert split_leaf_specs(()) == ((), ())
    with pytest.raises(TypeError) as e:
        split_leaf_specs([Gate, 3])
    assert str(e.value) == "leaf_modules entries must be nn.Module subclasses or qualified-name globs, found 3"
    with pytest.raises(TypeError, match="found <class 'int'>"):
        split_leaf_specs([int])


def test_untraceable_module_names_itself_and_hints():
    with pytest.raises(octify.ConversionError) as e:
        trace(WithBranchy(), (), ())
    msg = str(e.value)
    # The user's file and line, the module, and a hint with the module's type.
    assert msg.startswith("torch.fx cannot trace WithBranchy in module 'bad' (Branchy) at test_fx_stages.py:")
    assert "(`if x.sum() > 0:`): TraceError: control flow on a tensor's values" in msg
    assert "Hint: pass leaf_modules=[Branchy] (its type; or the glob 'bad')" in msg
    assert msg.endswith("to keep it whole; its convs then stay plain.")
    assert isinstance(e.value.__cause__, fx.proxy.TraceError)


def test_untraceable_model_at_top_level_hints_its_type():
    with pytest.raises(octify.ConversionError) as e:
        trace(Branchy(), (), ())
    msg = str(e.value)
    assert msg.startswith("torch.fx cannot trace Branchy at test_fx_stages.py:")
    # Never "keep the whole model as a leaf" (that would convert nothing): what to change instead.
    assert "leaf_modules=[" not in msg
    assert msg.endswith(
        "Hint: this is Branchy's own forward, which leaf_modules cannot keep whole: make that line depend on "
        "shapes only, or convert the submodules that hold the convs."
    )


def test_convert_with_untraceable_leaf_keeps_it_whole():
    model = _make(WithBranchy)
    x = _x(*X)
    with pytest.raises(octify.ConversionError, match=r"in module 'bad' \(Branchy\).*Hint:"):
        octify.convert(model, example_inputs=x)
    with pytest.warns(UserWarning, match="octify: Branchy has no octave rule"):
        out = octify.convert(model, example_inputs=x, leaf_modules=["bad"])
    assert [n.target for n in _nodes(out, "call_module", "bad")] == ["bad"]
    assert type(out.get_submodule("bad.conv")) is nn.Conv2d
    rec = octify.record_of(out)
    leaf = [c for c in rec.convs if c.name == "bad.conv"]
    assert leaf == [octify.ConvRecord("bad.conv", 0.0, 0.0, (), (), "inside leaf module bad")]
    # the pair in front of the leaf is merged: the leaf has no rule
    assert [(m.kind, m.node, m.target) for m in rec.merges if m.node == "bad"] == [("merge", "bad", "Branchy")]


# =============================================================================================
# 2. Shape propagation
# =============================================================================================
def test_every_node_gets_its_fake_value():
    gm = _traced(Chain(), _x(*X))
    shapes = {n.name: tuple(n.meta["val"].shape) for n in gm.graph.nodes}
    assert shapes == {
        "x": (2, 3, 16, 16), "stem": (2, 8, 16, 16), "conv1": (2, 16, 16, 16), "bn1": (2, 16, 16, 16),
        "relu": (2, 16, 16, 16), "conv2": (2, 8, 16, 16), "output": (2, 8, 16, 16),
    }
    assert all(isinstance(n.meta["val"], FakeTensor) for n in gm.graph.nodes)
    assert all(n.meta["val"].dtype == torch.float32 for n in gm.graph.nodes)


def test_shapes_through_pooling_flatten_and_linear():
    gm = _traced(Grouped(), _x(4, 3, 16, 16))
    shapes = {n.name: tuple(n.meta["val"].shape) for n in gm.graph.nodes}
    assert shapes["gconv"] == (4, 16, 16, 16)
    assert shapes["pool"] == (4, 16, 1, 1)
    assert shapes["flatten"] == (4, 16)
    assert shapes["fc"] == (4, 4)


def test_propagation_leaves_training_state_untouched():
    model = Chain().train()
    propagate_gm = trace(model, (), ())
    before = model.bn1.running_mean.clone()
    fm = fake_mode()
    propagate(propagate_gm, fm, fakeify(fm, (_x(*X),)))
    assert propagate_gm.training and propagate_gm.bn1.training
    assert propagate_gm.bn1.num_batches_tracked.item() == 0
    assert torch.equal(propagate_gm.bn1.running_mean, before)


def test_leaf_reading_tensor_values_is_run_on_real_tensors():
    gm = trace(WithBranchy(), (), ("bad",))
    fm = fake_mode()
    propagate(gm, fm, fakeify(fm, (_x(*X),)))
    bad = _nodes(gm, "call_module", "bad")[0]
    assert isinstance(bad.meta["val"], FakeTensor)
    assert tuple(bad.meta["val"].shape) == (2, 8, 16, 16)


def test_wrong_channel_count_names_the_node():
    gm = trace(Chain(), (), ())
    stem = _nodes(gm, "call_module", "stem")[0]
    fm = fake_mode()
    with pytest.raises(octify.ConversionError) as e:
        propagate(gm, fm, fakeify(fm, (_x(2, 4, 16, 16),)))
    msg = str(e.value)
    assert f"failed at node `{stem.format_node()}`" in msg
    assert "expected input[2, 4, 16, 16] to have 3 channels, but got 4 channels instead" in msg
    assert msg.endswith("Hint: check that example_inputs has the shape the model expects (N, C, H, W).")


def test_too_many_and_too_few_inputs():
    class TwoIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x, y):
            return self.conv(x + y)

    with pytest.raises(octify.ConversionError) as e:
        octify.convert(Chain(), example_inputs=(_x(*X), _x(*X)))
    assert str(e.value) == (
        "example_inputs do not fit Chain.forward(x): too many positional arguments. "
        "Hint: pass a tuple with one tensor per positional input of forward(), or a dict of keyword inputs."
    )
    with pytest.raises(octify.ConversionError) as e:
        octify.convert(TwoIn(), example_inputs=_x(*X))
    assert str(e.value).startswith("TwoIn.forward needs an input 'y' that example_inputs does not give.")


# =============================================================================================
# 3. Plan
# =============================================================================================
LAST_LAYER = "its output reaches a model output with no channel-mixing op between (the last layer: full resolution)"


def test_plan_stem_and_default():
    plans = _plan(Chain(), _x(*X))
    assert list(plans) == ["stem", "conv1", "conv2"]
    stem = plans["stem"]
    assert (stem.alpha_out, stem.keep_plain, stem.reason) == (0.0, True, "stem (first conv on the model input)")
    p = plans["conv1"]
    assert (p.alpha_out, p.keep_plain, p.reason, p.split_groups, p.stride_mode) == (0.5, False, None, 1, "conv")
    # The last conv (its output is the model's, densely) ends the octave network: alpha_out 0.
    p = plans["conv2"]
    assert (p.alpha_out, p.keep_plain, p.reason) == (0.0, False, LAST_LAYER)
    # An explicit alpha_for wins over that default.
    assert _plan(Chain(), _x(*X), alpha_for={"conv2": 0.5})["conv2"].alpha_out == 0.5


def test_plan_exclude_glob():
    plans = _plan(Chain(), _x(*X), exclude=("conv*",))
    assert [(n, p.alpha_out, p.keep_plain, p.reason) for n, p in plans.items()] == [
        ("stem", 0.0, True, "stem (first conv on the model input)"),
        ("conv1", 0.0, True, "excluded"),
        ("conv2", 0.0, True, "excluded"),
    ]
    plans = _plan(Chain(), _x(*X), exclude=("conv2",))
    assert (plans["conv1"].keep_plain, plans["conv2"].keep_plain) == (False, True)


def test_plan_alpha_for_dict_and_callable():
    plans = _plan(TwoBranches(), _x(*X), alpha_for={"conv_a": 0.25, "h*": 0.0})
    assert plans["conv_a"].alpha_out == 0.25
    assert plans["conv_b"].alpha_out == 0.5  # not matched: the global alpha
    assert (plans["head"].alpha_out, plans["head"].reason, plans["head"].keep_plain) == (0.0, "alpha_for sets alpha 0", False)

    seen = []

    def choose(name, conv, out):
        seen.append((name, type(conv).__name__, out))
        return 0.75 if name == "conv_b" else None

    plans = _plan(TwoBranches(), _x(*X), alpha_for=choose)
    assert [plans[n].alpha_out for n in ("conv_a", "conv_b", "head")] == [0.5, 0.75, 0.0]  # head: the last layer
    # called with the name, the module and the output shape, for every conv past the stem
    assert seen == [(n, "Conv2d", (2, 8, 16, 16)) for n in ("conv_a", "conv_b", "head")]


def test_plan_alpha_for_out_of_range():
    with pytest.raises(ValueError) as e:
        _plan(Chain(), _x(*X), alpha_for=lambda name, conv, out: 1.5)
    assert str(e.value) == "alpha_for gave alpha=1.5 for conv 'conv1'; expected a number in [0, 1]"


class Upsampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.small = nn.ConvTranspose2d(3, 8, 2, stride=2)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        return self.head(torch.cat([self.up(self.stem(x)), self.small(x)], 1))


def test_plan_transposed_convs_take_the_same_decisions():
    # One plan for every conv kind: the stem rule, exclusion, alpha_for and its range check,
    # min_size and the last layer apply to transposed convs as to the others.
    x = _x(1, 3, 8, 8)
    plans = _plan(Upsampler(), x, min_size=4)
    assert (plans["up"].alpha_out, plans["up"].reason) == (0.5, None)
    assert (plans["small"].reason, plans["small"].keep_plain) == ("stem (first conv on the model input)", True)
    assert plans["head"].reason.startswith("its output reaches a model output")
    assert (plans := _plan(Upsampler(), x, exclude=("up",)))["up"].keep_plain and plans["up"].reason == "excluded"
    assert _plan(Upsampler(), x, min_size=32)["up"].reason == "output 16x16 below min_size 32"
    assert _plan(Upsampler(), x, alpha_for={"up": 0.25})["up"].alpha_out == 0.25
    with pytest.raises(ValueError) as e:
        _plan(Upsampler(), x, alpha_for={"up": 1.5})
    assert str(e.value) == "alpha_for gave alpha=1.5 for conv 'up'; expected a number in [0, 1]"


def test_plan_min_size_and_too_narrow():
    plans = _plan(Shapes(), _x(*X))
    assert plans["down"].alpha_out == 0.5  # 8x8 is not below min_size 8
    assert plans["narrow"].alpha_out == 0.5  # 3 channels: 2 high, 1 low
    plans = _plan(Shapes(), _x(*X), alpha_for={"narrow": 0.25})
    assert (plans["narrow"].alpha_out, plans["narrow"].reason) == (0.0, "too narrow to split (3 channels per group at alpha 0.25)")
    plans = _plan(Shapes(), _x(*X), min_size=9)
    assert plans["conv1"].alpha_out == 0.5  # 16x16
    assert (plans["down"].alpha_out, plans["down"].reason) == (0.0, "output 8x8 below min_size 9")
    assert plans["down"].keep_plain is False
    plans = _plan(Shapes(), _x(*X), alpha=1.0)
    assert (plans["conv1"].alpha_out, plans["conv1"].reason) == (0.0, "alpha 1 leaves no high channel")


def test_plan_grouped_consumer_sets_split_groups():
    plans = _plan(Grouped(), _x(*X))
    assert plans["conv1"].split_groups == 2  # reaches gconv (groups=2) through bn and relu
    assert plans["gconv"].split_groups == 1
    out = octify.convert(_make(Grouped), example_inputs=_x(*X))
    part = out.conv1.out_partition
    assert part == octify.Partition((0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15))
    assert out.gconv.in_partition == part  # no align needed in front of the grouped conv
    assert octify.record_of(out).count("align") == 0


def test_plan_latency_keeps_depthwise_block_plain():
    default = _plan(Depthwise(), _x(*X))
    assert [default[n].alpha_out for n in ("body.0.pw", "body.0.dw", "body.0.pw2", "head")] == [0.5, 0.5, 0.5, 0.0]
    plans = _plan(Depthwise(), _x(*X), policy="latency-rules")
    for name in ("body.0.pw", "body.0.dw", "body.0.pw2"):
        p = plans[name]
        assert p.alpha_out == 0.0
        assert p.reason.startswith("latency policy:")
        assert p.reason == "latency policy: block body.0 has a depthwise conv (body.0.dw), memory-bound"
    assert (plans["head"].alpha_out, plans["head"].reason) == (0.0, LAST_LAYER)


# =============================================================================================
# 4. Options
# =============================================================================================
def test_options_normalise():
    opts = ConvertOptions(exclude="layer4.*", leaf_modules=[Gate, "bad"], alpha=1)
    assert opts.exclude == ("layer4.*",)
    assert ConvertOptions(exclude=["a", "b.*"]).exclude == ("a", "b.*")
    assert opts.alpha == 1.0 and isinstance(opts.alpha, float)
    assert (opts.leaf_types, opts.leaf_globs) == ((Gate,), ("bad",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.alpha = 0.25


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(policy="fast"), ValueError, "policy must be one of 'default', 'latency', 'latency-rules', found 'fast'"),
        (dict(memory_format="nchw"), ValueError, "memory_format must be 'channels_last' or 'preserve', found 'nchw'"),
        (dict(stride_mode="avg"), ValueError, "stride_mode must be 'conv' or 'pool', found 'avg'"),
        (dict(octave=2.0), TypeError, "octave must be an integer >= 1, found 2.0 (float)"),
        (dict(octave=0), ValueError, "octave must be an integer >= 1, found 0"),
        (dict(octave=True), TypeError, "octave must be an integer >= 1, found True (bool)"),
        (dict(min_size=-1), ValueError, "min_size must be an integer >= 0, found -1"),
        (dict(min_size=8.0), TypeError, "min_size must be an integer >= 0, found 8.0 (float)"),
        (dict(alpha=1.5), ValueError, "alpha must be a number in [0, 1], found 1.5"),
        (dict(alpha="0.5"), TypeError, "alpha must be a number in [0, 1], found '0.5' (str)"),
        (dict(exclude=3), TypeError, "exclude must be glob strings over qualified module names, found 3"),
        (dict(alpha_for=5), TypeError, "alpha_for must be a dict of glob -> alpha or a callable, found int"),
        (dict(alpha_for={"a.*": 2}), ValueError, "alpha_for['a.*'] must be a number in [0, 1], found 2"),
        (dict(leaf_modules=[3]), TypeError, "leaf_modules entries must be nn.Module subclasses or qualified-name globs, found 3"),
    ],
)
def test_options_reject(kwargs, exc, message):
    with pytest.raises(exc) as e:
        ConvertOptions(**kwargs)
    # Typed: an OptionError (a usage error on the command line), and a ValueError or TypeError as Python's are.
    assert type(e.value) is {ValueError: OptionError, TypeError: OptionTypeError}[exc]
    assert str(e.value) == message


def test_convert_validates_before_any_work():
    with pytest.raises(ValueError, match=re.escape("policy must be one of 'default', 'latency', 'latency-rules', found 'fast'")):
        octify.convert(Branchy(), example_inputs=_x(*X), policy="fast")  # untraceable: never reached


# =============================================================================================
# 5. Rewrite and rules
# =============================================================================================
def _rewrite_by_hand(model: nn.Module, x: torch.Tensor, rules=None, **options):
    """Stages 1-4 of the pass, as convert runs them: (traced gm, new graph, root, record, builder)."""
    opts = ConvertOptions(**{"octave": 1, "rules": rules, **options})
    state = run_stages(PassState(model, (x,), {}, opts), last="rewrite")
    return state.gm, state.graph, state.root, state.record, state.builder


def test_the_stages_of_the_pass_run_in_order_and_each_leaves_its_result():
    model = _make(Chain)
    x = _x(*X)
    opts = ConvertOptions()
    state = run_stages(PassState(model, (x,), {}, opts, replay=replay_options(opts, (x,), {})), last="shape_prop")
    assert state.gm is not None and state.plans is None and all("val" in n.meta for n in state.gm.graph.nodes if n.op != "output")
    run_stages(state, first="plan", last="plan")
    assert state.out is None and {str(n.target): p.alpha_out for n, p in state.plans.items()}["conv1"] == 0.5
    out = run_stages(state, first="rewrite").out
    assert octify.record_of(out).to_dict() == octify.record_of(octify.convert(model, example_inputs=x)).to_dict()
    with pytest.raises(ValueError, match="a stage of the pass must be one of 'trace', 'shape_prop', .* found 'fold'"):
        run_stages(state, first="fold")


def test_rewrite_by_hand_chain():
    model = _make(Chain)
    x = _x(*X)
    # alpha_for keeps the last conv octave (by default it would end the network plain), so that
    # its pair reaches the output and is merged there.
    gm, graph, root, record, builder = _rewrite_by_hand(model, x, alpha_for={"conv2": 0.5})
    ops = [(n.op, n.target) for n in graph.nodes if n.op == "call_module"]
    assert ops == [("call_module", t) for t in ("stem", "conv1", "bn1", "relu", "relu", "conv2", "octify_merge_0")]
    assert sorted(builder.new_modules) == ["bn1", "conv1", "conv2", "octify_merge_0"]
    assert type(root.conv1) is OctConv2d and type(root.bn1) is OctBatchNorm2d and type(root.stem) is nn.Conv2d
    assert type(model.conv1) is nn.Conv2d and type(gm.conv1) is nn.Conv2d  # the original is untouched
    assert [(m.kind, m.node, m.reason) for m in record.merges] == [("merge", "output", "model output")]
    assert record.threaded == {"BatchNorm2d": 1, "ReLU": 1}
    out = fx.GraphModule(root, graph)
    builder.restore_training_flags(out)
    with torch.no_grad():
        torch.testing.assert_close(out(x), model(x), rtol=RTOL, atol=ATOL)


def test_chain_gives_octave_layers_under_original_names():
    model = _make(Chain)
    out = octify.convert(model, example_inputs=_x(*X), alpha_for={"conv2": 0.0})
    kinds = {n: type(m) for n, m in out.named_modules() if n in ("stem", "conv1", "bn1", "relu", "conv2")}
    assert kinds == {"stem": nn.Conv2d, "conv1": OctConv2d, "bn1": OctBatchNorm2d, "relu": nn.ReLU, "conv2": OctConv2d}
    assert out.conv2.out_partition.low == ()  # alpha_out 0: a plain output, no merge at the end
    rec = octify.record_of(out)
    assert rec.count("merge") == 0 and rec.merges == []
    assert [(c.name, c.alpha_in, c.alpha_out, c.plain_reason) for c in rec.convs] == [
        ("stem", 0.0, 0.0, "stem (first conv on the model input)"),
        ("conv1", 0.0, 0.5, None),
        ("conv2", 0.5, 0.0, None),
    ]
    assert out.__class__.__name__ == "OctChain"
    assert not out.training and not out.conv1.training


def test_op_without_rule_is_merged_and_warned():
    model = _make(Flip)
    with pytest.warns(UserWarning) as caught:
        out = octify.convert(model, example_inputs=_x(*X), alpha_for={"conv2": 0.0})
    msgs = [(str(w.message), w.filename) for w in caught if "octify" in str(w.message)]
    # At the caller's line, not inside octify, however deep the pass is when it warns.
    assert msgs == [("octify: torch.flip has no octave rule; the pair is merged back to a plain tensor before it", __file__)]
    assert octify.record_of(out).merges == [MergeRecord("merge", "flip", "torch.flip", "no octave rule for torch.flip")]
    assert len([m for m in out.modules() if isinstance(m, OctaveMerge)]) == 1


def test_a_pair_is_merged_once_and_warned_once():
    with pytest.warns(UserWarning) as caught:
        out = octify.convert(_make(TwoFlips), example_inputs=_x(*X), alpha_for={"conv2": 0.0})
    assert sum("torch.flip has no octave rule" in str(w.message) for w in caught) == 1
    rec = octify.record_of(out)
    assert [(m.kind, m.node) for m in rec.merges] == [("merge", "flip")]  # flip_1 reuses the merged tensor
    assert len(_nodes(out, "call_function", torch.flip)) == 2


def test_user_rule_replaces_merge_and_leaves_registry():
    before = octify.rules.registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "has no octave rule" warning
        out = octify.convert(_make(Flip), example_inputs=_x(*X), alpha_for={"conv2": 0.0}, rules={torch.flip: per_branch})
    rec = octify.record_of(out)
    assert rec.merges == []
    assert rec.threaded == {"torch.flip": 1}
    assert len(_nodes(out, "call_function", torch.flip)) == 2  # one per branch
    after = octify.rules.registry()
    assert after == before
    assert torch.flip not in after


def test_rules_none_removes_a_builtin():
    before = octify.rules.registry()
    with pytest.warns(UserWarning, match="octify: ReLU has no octave rule"):
        out = octify.convert(_make(Chain), example_inputs=_x(*X), alpha_for={"conv2": 0.0}, rules={nn.ReLU: None})
    assert octify.record_of(out).merges == [MergeRecord("merge", "relu", "ReLU", "no octave rule for ReLU")]
    assert octify.rules.registry() == before and nn.ReLU in before


def test_rule_declining_or_returning_nothing_is_recorded_without_warning():
    def decline(ctx, node, args, kwargs):
        raise Decline("not today")

    def nothing(ctx, node, args, kwargs):
        return None

    for rule, reason in ((decline, "torch.flip rule declined: not today"), (nothing, "its rule returned nothing")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = octify.convert(_make(Flip), example_inputs=_x(*X), alpha_for={"conv2": 0.0}, rules={torch.flip: rule})
        assert octify.record_of(out).merges == [MergeRecord("merge", "flip", "torch.flip", reason)]


def test_rule_whose_emit_fails_raises_conversion_error():
    def bad_rule(ctx, node, args, kwargs):
        return ctx.emit("call_function", torch.mm, (args[0].high, args[0].low))  # 4-D: mm fails

    gm = trace(Flip(), (), ())
    flip = _nodes(gm, "call_function", torch.flip)[0]
    with pytest.raises(octify.ConversionError) as e:
        octify.convert(Flip(), example_inputs=_x(*X), rules={torch.flip: bad_rule})
    msg = str(e.value)
    assert msg.startswith(f"the octave rule bad_rule failed on `{flip.format_node()}`: RuntimeError: ")
    assert msg.endswith("override it with rules={...: None} to merge there instead.")


def test_pair_plus_plain_map_inserts_a_split():
    model = _make(Residual)
    out = octify.convert(model, octave=2, example_inputs=_x(*X), alpha_for={"head": 0.0})
    rec = octify.record_of(out)
    assert rec.merges == [MergeRecord("split", "add", "operator.add", "operator.add combines a pair with a plain map")]
    splits = [m for m in out.modules() if isinstance(m, OctaveSplit)]
    assert len(splits) == 1 and splits[0].partition == octify.Partition((0, 1, 2, 3), (4, 5, 6, 7))


def test_pairs_of_different_partitions_insert_an_align():
    model = _make(TwoBranches)
    out = octify.convert(model, example_inputs=_x(*X), alpha_for={"conv_a": 0.25, "conv_b": 0.5, "head": 0.0})
    rec = octify.record_of(out)
    assert rec.merges == [
        MergeRecord("align", "add", "operator.add", "operands of different partitions (2 channels change branch)")
    ]
    aligns = [m for m in out.modules() if isinstance(m, Realign)]
    assert len(aligns) == 1
    # conv_a (2 low channels) moves to conv_b's partition (4 low channels): the cheaper one
    assert out.conv_a.out_partition == octify.Partition((0, 1, 2, 3, 4, 5), (6, 7))
    assert out.head.in_partition == out.conv_b.out_partition == octify.Partition((0, 1, 2, 3), (4, 5, 6, 7))


def test_global_pooling_of_a_pair_is_a_channel_merge():
    model = _make(Grouped)
    x = _x(*X)
    out = octify.convert(model, octave=1, example_inputs=x)
    merges = [n for n, m in out.named_modules() if isinstance(m, ChannelMerge)]
    assert merges == ["octify_pool_merge_0"]
    assert not any(isinstance(m, OctaveMerge) for m in out.modules())
    assert octify.record_of(out).merges == []
    assert octify.record_of(out).threaded["AdaptiveAvgPool2d"] == 1
    with torch.no_grad():
        want = model(x)
        got = out(x)
    assert got.shape == (2, 4)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_rule_keyed_module_type_is_traced_whole():
    out = octify.convert(_make(Gated), example_inputs=_x(*X), alpha_for={"conv2": 0.0}, rules={Gate: per_branch})
    assert [n.target for n in _nodes(out, "call_module") if n.target.startswith("gate")] == ["gate", "gate"]
    rec = octify.record_of(out)
    assert rec.threaded == {"Gate": 1}
    assert rec.merges == []


# =============================================================================================
# 6. Freeze (after the pass): folded batch norms, fused low weights, matrix-product 1x1 convs
# =============================================================================================
def _count_conv_bn(gm: fx.GraphModule) -> int:
    return len(_nodes(gm, "call_function", conv_bn))


def _norms(gm: nn.Module) -> list:
    return [n for n, m in gm.named_modules() if isinstance(m, (nn.BatchNorm2d, OctBatchNorm2d)) and "." not in n]


def test_convert_returns_a_plain_graph_and_freeze_folds_its_pairs():
    model = _make(FuseNet)
    x = _x(*X)
    gm = octify.convert(model, example_inputs=x)
    assert octify.record_of(gm).fused == [] and _count_conv_bn(gm) == 0
    assert [n.target for n in _nodes(gm, "call_module")] == ["stem", "bn0", "conv1", "bn1", "conv2"]
    frozen = octify.freeze(gm)
    assert octify.record_of(frozen).fused == [("stem", "bn0"), ("conv1", "bn1")]
    assert _norms(frozen) == [] and _norms(gm) == ["bn0", "bn1"]  # the converted model is copied, not changed
    assert [n.target for n in _nodes(frozen, "call_module")] == ["stem", "conv1", "conv2"]
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), gm(x), rtol=RTOL, atol=ATOL)


def test_freeze_stores_the_low_weight_once_and_runs_1x1_convs_as_matrix_products_on_request():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.c0 = nn.Conv2d(16, 16, 3, padding=1)
            self.c3 = nn.Conv2d(16, 16, 3, padding=1)
            self.c1 = nn.Conv2d(16, 16, 1)
            self.head = nn.Conv2d(16, 4, 3, padding=1)

        def forward(self, x):
            y = F.relu(self.c0(F.relu(self.stem(x))))
            return self.head(F.relu(self.c1(F.relu(self.c3(y)))))

    model = _make(Net)
    x = _x(*X)
    gm = octify.convert(model, example_inputs=x)
    frozen = octify.freeze(gm, matmul_1x1=False)
    c3, c1 = frozen.c3, frozen.c1
    assert (c3.weight_hl, c3.weight_ll) == (None, None) and tuple(c3.weight_low.shape) == (8, 16, 3, 3)
    assert c3.weight_low.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(c3.weight_low, torch.cat([gm.c3.weight_hl, gm.c3.weight_ll], 1))
    assert "c3.weight_low" in frozen.state_dict() and "c3.weight_hl" not in frozen.state_dict()
    assert (c1.runs_as_matmul, c3.runs_as_matmul, gm.c1.runs_as_matmul) == (False, False, False)
    torch.testing.assert_close(c3.to_dense_weight()[0], gm.c3.to_dense_weight()[0])
    mm = octify.freeze(gm, matmul_1x1=True)
    assert (mm.c1.runs_as_matmul, mm.c3.runs_as_matmul) == (True, False)
    kept = octify.freeze(octify.convert(model, example_inputs=x, memory_format="preserve"), memory_format="preserve")
    assert not kept.c3.weight_low.is_contiguous(memory_format=torch.channels_last) and not kept.c1.runs_as_matmul
    auto = octify.freeze(gm, example_inputs=x)  # each 1x1 octave conv timed both ways: c1 is the only one
    assert [n for n, m in auto.named_modules() if isinstance(m, OctConv2d) and m.pointwise] == ["c1"]
    with pytest.raises(ValueError, match=re.escape("octify.freeze: matmul_1x1 must be True, False, 'auto' or a list of layer names, found 'yes'")):
        octify.freeze(gm, matmul_1x1="yes")
    with torch.no_grad():
        for m in (frozen, mm, kept, auto):
            torch.testing.assert_close(m(x), gm(x), rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), gm(x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=r"^OctConv2d.use_matmul: only dense, ungrouped 1x1 convs .* this layer is 16, 16, kernel_size=\(3, 3\)"):
        gm.c3.use_matmul()


def test_choose_matmul_times_each_1x1_layer_on_what_the_model_feeds_it(monkeypatch):
    import octify.fx.kernel_choice as kernel_choice
    from octify.fx.kernel_choice import choose_matmul

    model = _make(FuseNet)
    x = _x(*X)
    gm = octify.freeze(octify.convert(model, example_inputs=x, alpha_for={"conv2": 0.5}), matmul_1x1=False)
    gm.conv2 = OctConv2d(16, 8, 1, alpha=0.5).eval()  # a 1x1 octave layer fed by conv1's pair
    pointwise = [n for n, m in gm.named_modules() if isinstance(m, OctConv2d) and m.pointwise]
    assert pointwise == ["conv2"]
    # A real timing decides either way; which way depends on the machine and its load.
    chosen = choose_matmul(gm, (x,), reps=2)
    assert chosen in ([], ["conv2"]) and gm.conv2.runs_as_matmul == (chosen == ["conv2"])
    # The decision, on timings given (no test depends on a clock): each layer timed on the pair
    # the model feeds it, alternated, the products kept only when faster by more than the margin.
    seen = []

    def timed(ratio):
        def fake(layer, args, matmul, reps):
            seen.append((layer is gm.conv2, isinstance(args[0], tuple), matmul))
            return [ratio if matmul else 1.0] * reps
        return fake

    for ratio, margin, expected in ((0.5, 0.05, ["conv2"]), (0.97, 0.05, []), (1.5, 0.05, []), (0.97, 0.0, ["conv2"])):
        seen.clear()
        monkeypatch.setattr(kernel_choice, "_times", timed(ratio))
        assert choose_matmul(gm, (x,), reps=3, margin=margin) == expected, (ratio, margin)
        assert gm.conv2.runs_as_matmul == bool(expected) and not gm.conv1.runs_as_matmul
        assert seen == [(True, True, True), (True, True, False)] + [(True, True, False), (True, True, True)] * 3


def test_freeze_refuses_a_model_in_training_mode():
    gm = octify.convert(_make(FuseNet), example_inputs=_x(*X)).train()
    with pytest.raises(ValueError, match=re.escape(
        "octify.freeze makes an inference model, but 8 module(s) are in training mode (OctFuseNet, stem, bn0, ...). "
        "Hint: call model.eval() first."
    )):
        octify.freeze(gm)
    with pytest.raises(ValueError, match="memory_format must be 'channels_last' or 'preserve', found 'nhwc'"):
        octify.freeze(gm.eval(), memory_format="nhwc")


def test_converted_model_sees_every_write_to_its_statistics_and_weights():
    model = _make(FuseNet)
    x = _x(*X)
    gm = octify.convert(model, example_inputs=x)
    with torch.no_grad():
        y0 = gm(x)
        gm.bn0.running_mean.add_(1.0)  # in place
        model.bn0.running_mean.add_(1.0)
        gm.conv1.weight_hh.data.mul_(1.5)  # through .data: no version counter moves
        model.conv1.weight.data[:8, :8].mul_(1.5)
        y1 = gm(x)
        ref = octify.convert(model, example_inputs=x)(x)
    assert rel_err(y1, y0) > 1e-2
    torch.testing.assert_close(y1, ref, rtol=RTOL, atol=ATOL)


def test_conv_output_read_twice_is_not_folded():
    class Twice(FuseNet):
        def forward(self, x):
            y = F.relu(self.bn0(self.stem(x)))
            z = self.conv1(y)
            return self.conv2(self.bn1(z) + z)

    model = _make(Twice)
    x = _x(*X)
    out = octify.convert(model, example_inputs=x)
    pairs = conv_bn_pairs(out, dict(out.named_modules()))
    assert [(c.target, b.target) for b, c in pairs] == [("stem", "bn0")]
    frozen = octify.freeze(out)
    assert octify.record_of(frozen).fused == [("stem", "bn0")] and _norms(frozen) == ["bn1"]
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), out(x), rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(octify.convert(model, example_inputs=x, octave=1)(x), model(x), rtol=RTOL, atol=ATOL)


def test_legacy_conv_bn_calls_unfuse_into_the_two_modules():
    model = _make(FuseNet)
    x = _x(*X)
    gm = octify.convert(model, example_inputs=x, alpha_for={"conv2": 0.0, "conv1": 0.0})
    with torch.no_grad():
        want = gm(x)
    # A graph as octify 0.1.0 wrote it: the stem pair as one conv_bn(x, conv, bn) call.
    stem, bn0 = _nodes(gm, "call_module", "stem")[0], _nodes(gm, "call_module", "bn0")[0]
    with gm.graph.inserting_before(bn0):
        legacy = gm.graph.call_function(conv_bn, (stem.args[0], gm.graph.get_attr("stem"), gm.graph.get_attr("bn0")))
    bn0.replace_all_uses_with(legacy)
    gm.graph.erase_node(bn0)
    gm.graph.erase_node(stem)
    gm.recompile()
    with torch.no_grad():
        torch.testing.assert_close(gm(x), want, rtol=RTOL, atol=ATOL)
    unfuse_conv_bn(gm)
    assert _count_conv_bn(gm) == 0 and _nodes(gm, "get_attr") == []
    assert [n.target for n in _nodes(gm, "call_module")][:2] == ["stem", "bn0"]
    with torch.no_grad():
        torch.testing.assert_close(gm(x), want, rtol=RTOL, atol=ATOL)


def test_bn_affine_and_fold_affine_by_hand():
    torch.manual_seed(3)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    bn = randomize_bn(nn.BatchNorm2d(16), 3).eval()
    x = _x(2, 8, 16, 16, seed=3)
    scale, shift = bn_affine(bn)
    torch.testing.assert_close(scale, bn.weight / torch.sqrt(bn.running_var + bn.eps))
    torch.testing.assert_close(shift, bn.bias - bn.running_mean * scale)
    with torch.no_grad():
        w, b = fold_affine(conv.weight, conv.bias, scale, shift)
        torch.testing.assert_close(F.conv2d(x, w, b, padding=1), bn(conv(x)), rtol=RTOL, atol=ATOL)
        # no conv bias: the bias is the shift; no weight (an absent path): None
        w2, b2 = fold_affine(conv.weight, None, scale, shift)
        assert b2 is shift
        torch.testing.assert_close(w2, w)
        assert fold_affine(None, None, scale, None) == (None, None)
        w_cl = conv.weight.contiguous(memory_format=torch.channels_last)
        assert fold_affine(w_cl, None, scale, shift)[0].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="folding a batch norm needs one that tracks running statistics"):
        bn_affine(nn.BatchNorm2d(4, track_running_stats=False))


def test_fold_bn_removes_batch_norms():
    model = _make(FuseNet)
    x = _x(*X)
    gm = octify.convert(model, example_inputs=x)
    folded = octify.fold_bn(gm)
    assert _norms(folded) == [] and _norms(gm) == ["bn0", "bn1"]  # the converted model is copied, not changed
    with torch.no_grad():
        torch.testing.assert_close(folded(x), gm(x), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match=re.escape("fold_bn folds running statistics into the convs: call model.eval() first")):
        octify.fold_bn(copy.deepcopy(gm).train())


# =============================================================================================
# 7. In-place sums
# =============================================================================================
class _Sum(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.full = nn.Conv2d(8, 8, 16)  # 16x16 -> 1x1

    def forward(self, x, y):
        if self.kind == "left":
            return self.conv(x) + y
        if self.kind == "right":
            return y + self.conv(x)
        if self.kind == "per_channel":  # y broadcast into the conv's output: fine
            return self.conv(x) + self.full(y)
        if self.kind == "twice":
            c = self.conv(x)
            return c + y, c
        if self.kind == "broadcast":  # the conv's 1x1 output is broadcast: the sum needs a new tensor
            return self.full(x) + y
        if self.kind == "not_fresh":
            return F.relu(x) + y
        if self.kind == "promotes":
            return self.conv(x) + y.double()
        raise AssertionError(self.kind)


@pytest.mark.parametrize(
    "kind, n_iadd",
    [("left", 1), ("right", 1), ("per_channel", 1), ("twice", 0), ("broadcast", 0), ("not_fresh", 0), ("promotes", 0)],
)
def test_inplace_adds(kind, n_iadd):
    torch.manual_seed(0)
    model = _Sum(kind).eval()
    x, y = _x(2, 8, 16, 16, seed=1), _x(2, 8, 16, 16, seed=2)
    gm = _traced(model, x, y)
    assert inplace_adds(gm) == n_iadd
    assert len(_nodes(gm, "call_function", operator.iadd)) == n_iadd
    assert len(_nodes(gm, "call_function", operator.add)) == 1 - n_iadd
    if n_iadd:
        iadd = _nodes(gm, "call_function", operator.iadd)[0]
        assert iadd.args[0].op == "call_module" and iadd.args[0].target == "conv"  # written into the conv's output
    y_before = y.clone()
    with torch.no_grad():
        got, want = gm(x, y), model(x, y)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(y, y_before)  # the other operand is never written


def test_convert_writes_residual_sums_in_place():
    model = _make(Residual)
    out = octify.convert(model, example_inputs=_x(*X), alpha_for={"head": 0.0})
    # the sum of a pair is two sums, one per branch, each into conv1's fresh output
    iadds = _nodes(out, "call_function", operator.iadd)
    assert len(iadds) == 2 and _nodes(out, "call_function", operator.add) == []
    assert all(a.args[0].args[0].target == "conv1" for a in iadds)


class _ResidualBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        y = F.relu(self.stem(x))
        return self.head(F.relu(self.bn1(self.conv1(y)) + y))


def test_inplace_sums_keep_training_gradients():
    torch.manual_seed(0)
    model = randomize_bn(_ResidualBN(), 0).train()
    x = _x(*X)
    out = octify.convert(copy.deepcopy(model), octave=1, example_inputs=x)
    assert len(_nodes(out, "call_function", operator.iadd)) == 2  # into the batch norm's output, then the stem's
    got, want = out(x), model(x)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    got.square().sum().backward()
    want.square().sum().backward()
    assert rel_err(out.stem.weight.grad, model.stem.weight.grad) < 1e-5
    g = model.conv1.weight.grad  # conv1: 8 plain channels in, 4 high + 4 low out
    assert rel_err(out.conv1.weight_hh.grad, g[:4]) < 1e-5
    assert rel_err(out.conv1.weight_hl.grad, g[4:]) < 1e-5
    # batch statistics were updated the same way (one training step each)
    torch.testing.assert_close(out.bn1.bn_h.running_mean, model.bn1.running_mean[:4], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out.bn1.bn_l.running_mean, model.bn1.running_mean[4:], rtol=RTOL, atol=ATOL)


# =============================================================================================
# 8. Verify
# =============================================================================================
def test_verify_compares_output_structure():
    x = _x(*X)
    model = _make(Chain)
    gm = trace(model, (), ())
    fm = fake_mode()
    fake_inputs = fakeify(fm, (x,))
    propagate(gm, fm, fake_inputs)
    assert verify(gm, octify.convert(model, example_inputs=x, verify=False), fm, fake_inputs) is None

    other = copy.deepcopy(model)
    other.conv2 = nn.Conv2d(16, 4, 3, padding=1)
    with pytest.raises(octify.ConversionError) as e:
        verify(gm, trace(other, (), ()), fm, fake_inputs)
    assert str(e.value).startswith(
        "the converted model's outputs ('Tensor', (2, 4, 16, 16), torch.float32) differ from the original's "
        "('Tensor', (2, 8, 16, 16), torch.float32). Hint: "
    )
    broken = copy.deepcopy(model)
    broken.conv2 = nn.Conv2d(4, 8, 3, padding=1)
    with pytest.raises(octify.ConversionError, match=r"^the converted model fails on example_inputs: RuntimeError: [^\n]*Hint: keep the part "
                       r"that fails plain with exclude=\[...\] or leaf_modules=\[...\], or pass verify=False") as e:
        verify(gm, trace(broken, (), ()), fm, fake_inputs)
    # The command line says it with its flags, and --no-verify writes only a model that runs.
    assert e.value.cli_hint.startswith("keep the part that fails plain with --exclude GLOB or --leaf GLOB, or pass --no-verify")


# =============================================================================================
# The oracle: at octave=1 every model above computes what the original computes
# =============================================================================================
ORACLE = [
    (Chain, {}),
    (Chain, dict(alpha=0.25, alpha_for={"conv2": 0.0})),
    (Chain, dict(rules={nn.ReLU: None})),
    (FuseNet, {}),
    (FuseNet, dict(memory_format="preserve")),
    (Flip, {}),
    (Flip, dict(rules={torch.flip: per_branch})),
    (TwoFlips, {}),
    (TwoBranches, dict(alpha_for={"conv_a": 0.25, "conv_b": 0.5})),
    (TwoBranches, dict(alpha_for={"conv_a": 0.75, "conv_b": 0.25})),
    (Residual, {}),
    (Grouped, {}),
    (Grouped, dict(alpha=0.25)),
    (Depthwise, {}),
    (Depthwise, dict(policy="latency-rules", alpha_for={"head": 0.5})),
    (Shapes, dict(min_size=9)),
    (Gated, {}),
    (Gated, dict(rules={Gate: per_branch})),
    (Gated, dict(leaf_modules=[Gate])),
    (WithBranchy, dict(leaf_modules=["bad"])),
]


@pytest.mark.parametrize("cls, kwargs", ORACLE, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(ORACLE)])
def test_octave_1_reproduces_the_model(cls, kwargs):
    model = _make(cls, seed=len(kwargs))
    x = _x(*X, seed=5)
    out = _convert_quiet(model, x, octave=1, **kwargs)
    assert octify.record_of(out).converted, "no conv was converted: the oracle would test nothing"
    with torch.no_grad():
        want = model(x)
        got = out(x)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    assert not out.training


@pytest.mark.parametrize("cls", [Chain, FuseNet, TwoBranches, Residual, Grouped, Depthwise])
def test_octave_2_keeps_output_shape_and_training_flags(cls):
    model = _make(cls)
    x = _x(*X, seed=5)
    out = _convert_quiet(model, x, octave=2)
    assert any(m.out_partition.low for m in out.modules() if isinstance(m, OctConv2d))
    with torch.no_grad():
        got, want = out(x), model(x)
    assert got.shape == want.shape and torch.isfinite(got).all()
    train_out = _convert_quiet(copy.deepcopy(model).train(), x, octave=2)
    assert train_out.training
    # Every module is in training mode: the layers that replace the original's, their
    # sub-layers, and the pass's own helpers (octify_merge_*, octify_split_*, ...).
    originals = {name for name, _ in model.named_modules()}
    flags = {n: m.training for n, m in train_out.named_modules()}
    assert originals <= set(flags) and all(flags.values()), {n: f for n, f in flags.items() if not f}
    eval_out = _convert_quiet(model.eval(), x, octave=2)
    assert not any(m.training for m in eval_out.modules())
