"""Inference-side features: fold_bn, the latency policy, the channels-last layout of converted models."""

from __future__ import annotations

import operator
import warnings

import pytest
import torch
import torchvision
from torch import nn

import octify
from octify import OctBatchNorm2d, OctConv2d

from conftest import OpCounter, randomize_bn, rel_err


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "regnet_y_400mf"])
def test_fold_bn_keeps_outputs_and_removes_every_bn(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.get_model(name)).eval()
    x = torch.randn(2, 3, 96, 96)
    converted = octify.convert(model, alpha=0.5, example_inputs=x).eval()
    folded = octify.fold_bn(converted)
    with torch.no_grad():
        want, got = converted(x), folded(x)
    assert rel_err(got, want) < 1e-4
    assert not any(isinstance(m, (nn.BatchNorm2d, OctBatchNorm2d)) for m in folded.modules())
    # The converted model itself is untouched: its norms are all still there.
    assert sum(isinstance(m, OctBatchNorm2d) for m in converted.modules()) > 0


def test_fold_bn_plain_model_and_conv_without_bias() -> None:
    model = randomize_bn(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())).eval()
    folded = octify.fold_bn(model)
    x = torch.randn(1, 3, 16, 16)
    assert rel_err(folded(x), model(x)) < 1e-5
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].bias is not None
    assert model[0].bias is None  # the original keeps its bias-free conv


def test_fold_bn_after_octconv_with_plain_output() -> None:
    # An OctConv2d with alpha_out 0 feeds an ordinary BatchNorm2d: folded too.
    conv = OctConv2d(8, 6, 3, padding=1, alpha=(0.5, 0.0), bias=False)
    model = nn.Sequential(conv, randomize_bn(nn.BatchNorm2d(6))).eval()
    folded = octify.fold_bn(model)
    pair = (torch.randn(1, 4, 10, 10), torch.randn(1, 4, 5, 5))
    assert rel_err(folded(pair), model(pair)) < 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_bn_refuses_training_mode() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        octify.fold_bn(model)


def test_a_frozen_plain_model_is_in_eval_mode_throughout_and_freezes_again() -> None:
    """torch.fx re-creates a plain model's containers (layer1, layer1.0, ...) as new modules,
    which start in training mode; freezing the frozen model again (another device, dtype or
    batch for its kernel choice) then refused it. The containers keep the original's flags."""
    model = torchvision.models.resnet18().eval()
    frozen = octify.freeze(model)
    assert [name for name, m in frozen.named_modules() if m.training] == []
    x = torch.randn(1, 3, 64, 64)
    again = octify.freeze(frozen.to(torch.float64), example_inputs=x.double())
    assert rel_err(again(x.double()).float(), model(x)) < 1e-4


def test_converted_weights_are_channels_last_unless_preserved() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    cl = octify.convert(model, example_inputs=x)
    kept = octify.convert(model, example_inputs=x, memory_format="preserve")
    w_cl = cl.get_submodule("layer1.0.conv1").weight_hh
    w_kept = kept.get_submodule("layer1.0.conv1").weight_hh
    assert w_cl.is_contiguous(memory_format=torch.channels_last) and not w_cl.is_contiguous()
    assert w_kept.is_contiguous()
    with torch.no_grad():
        assert rel_err(cl(x), kept(x)) < 1e-5
    with pytest.raises(ValueError, match="memory_format must be 'channels_last' or 'preserve', found 'nhwc'"):
        octify.convert(model, example_inputs=x, memory_format="nhwc")


def test_latency_policy_keeps_depthwise_blocks_plain_whole() -> None:
    model = torchvision.models.mobilenet_v2().eval()
    x = torch.randn(1, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = octify.record_of(octify.convert(model, example_inputs=x, policy="latency-rules"))
        default = octify.record_of(octify.convert(model, example_inputs=x))
    by_name = {c.name: c for c in rec.convs}
    # Every conv of an inverted-residual block (expand, depthwise, project) stays plain, so that
    # no split or merge lands inside a block; the reason names the block and its depthwise conv.
    for name in ("features.3.conv.0.0", "features.3.conv.1.0", "features.3.conv.2"):
        assert by_name[name].alpha_out == 0.0 and by_name[name].alpha_in == 0.0
        assert by_name[name].plain_reason == "latency policy: block features.3 has a depthwise conv (features.3.conv.1.0), memory-bound"
    assert rec.converted == [] and rec.merges == []
    assert len(default.converted) == 40  # the default policy converts them


def test_latency_policy_keeps_small_maps_plain_and_leaves_resnets_as_default() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    latency = octify.record_of(octify.convert(model, example_inputs=x, policy="latency-rules", min_size=4))
    default = octify.record_of(octify.convert(model, example_inputs=x, min_size=4))
    lat = {c.name: c for c in latency.convs}
    # layer4 works on 7x7 maps: octave under min_size=4, plain under the latency policy.
    assert {c.name: c.alpha_out for c in default.convs}["layer4.0.conv2"] == 0.5
    assert lat["layer4.0.conv2"].alpha_out == 0.0
    assert lat["layer4.0.conv2"].plain_reason == "latency policy: output 7x7 below 14"
    # Elsewhere ResNet's blocks pay for themselves: the same plan as the default policy.
    same = [c.name for c in default.convs if not c.name.startswith("layer4")]
    assert all(lat[n].alpha_out == {c.name: c.alpha_out for c in default.convs}[n] for n in same)
    with pytest.raises(ValueError, match="policy must be one of 'default', 'latency', 'latency-rules', found 'fast'"):
        octify.convert(model, example_inputs=x, policy="fast")


def test_latency_policy_keeps_a_block_with_a_thin_low_branch_plain_whole() -> None:
    model = torchvision.models.densenet121().eval()
    x = torch.randn(1, 3, 64, 64)
    rec = octify.record_of(octify.convert(model, alpha=0.25, example_inputs=x, policy="latency-rules", min_size=1))
    by_name = {c.name: c for c in rec.convs}
    block = "features.denseblock1.denselayer2"
    # conv2 makes 32 channels: 8 low at alpha 0.25, under the policy's 16; its 1x1 partner conv1
    # (128 channels, 32 low) is kept plain with it, so the layer pays for no split or merge.
    why = f"latency policy: block {block} has a low branch of 8 channels in {block}.conv2, too thin to pay"
    assert by_name[f"{block}.conv1"].alpha_out == 0.0 and by_name[f"{block}.conv1"].plain_reason == why
    assert by_name[f"{block}.conv2"].alpha_out == 0.0
    default = octify.record_of(octify.convert(model, alpha=0.25, example_inputs=x, min_size=1))
    assert {c.name: c.alpha_out for c in default.convs}[f"{block}.conv1"] == 0.25


def test_converted_model_compiles_without_graph_breaks() -> None:
    # torch.compile sees one graph: octify's modules branch only on Python-level facts
    # (shapes, the module's own configuration), never on tensor values.
    model = torchvision.models.resnet18().eval()
    converted = octify.convert(model, example_inputs=torch.randn(1, 3, 64, 64)).eval()
    explained = torch._dynamo.explain(converted)(torch.randn(1, 3, 64, 64))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


# -- conv -> batch norm pairs run as one conv in inference ------------------------------------------
def _bn_ops(model: nn.Module, x: torch.Tensor) -> int:
    with OpCounter() as counter:
        model(x)
    return sum(n for op, n in counter.counts.items() if "batch_norm" in op)


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "mobilenet_v2"])
def test_frozen_model_matches_the_converted_one_and_runs_no_batch_norm(name: str) -> None:
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.get_model(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    converted = octify.convert(model, alpha=0.5, example_inputs=x).eval()
    frozen = octify.freeze(converted)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(octify.record_of(frozen).fused) == n_bn  # every batch norm here follows a conv alone
    with torch.no_grad():
        assert rel_err(frozen(x), converted(x)) < 1e-4
        assert (_bn_ops(frozen, x), _bn_ops(converted, x)) == (0, n_bn + sum(
            isinstance(m, OctBatchNorm2d) and m.bn_h is not None and m.bn_l is not None for m in converted.modules()
        ))


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_merged_low_convs_keep_the_oracle_and_the_converted_models_numbers(name: str) -> None:
    """``freeze(merge_lh=True)`` (README's int8 flow): at octave=1 the original's outputs; at
    alpha 0.5 the converted model's, with every octave conv that runs as convs and has all
    four paths merged (resnext's grouped 3x3 convs are not: their groups stay apart)."""
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.get_model(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    oracle = octify.freeze(octify.convert(model, octave=1, example_inputs=x).eval(), matmul_1x1=False, merge_lh=True)
    converted = octify.convert(model, alpha=0.5, example_inputs=x).eval()
    frozen = octify.freeze(converted, matmul_1x1=False, merge_lh=True)
    layers = [m for m in frozen.modules() if isinstance(m, octify.OctConv2d)]
    merged = [m for m in layers if m.merges_lh]
    assert merged and all(m.groups > 1 or min(m.ih, m.il, m.oh, m.ol) == 0 for m in layers if not m.merges_lh)
    assert octify.record_of(frozen).frozen["merge_lh"] is True
    with torch.no_grad():
        assert rel_err(oracle(x), model(x)) < 1e-4
        assert rel_err(frozen(x), converted(x)) < 1e-4


def test_a_hook_on_a_converted_batch_norm_sees_its_output() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    converted = octify.convert(model, alpha=0.5, example_inputs=x).eval()
    seen = []
    converted.get_submodule("layer1.0.bn1").register_forward_hook(lambda m, i, o: seen.append(tuple(o[0].shape)))
    with torch.no_grad():
        converted(x)
    assert seen == [(1, 32, 16, 16)]


def test_residual_sums_are_in_place_and_gradients_match_the_original() -> None:
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.resnet18()).train()
    x = torch.randn(2, 3, 64, 64)
    oracle = octify.convert(model, alpha=0.5, octave=1, example_inputs=x).train()
    sums = [n.target for n in oracle.graph.nodes if n.target in (operator.add, operator.iadd)]
    # resnet18's eight residual sums (per branch where the maps are octave pairs), all written
    # in place as the original's `out += identity` is.
    assert len(sums) == 12 and set(sums) == {operator.iadd}
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    model(xa).square().sum().backward()
    oracle(xb).square().sum().backward()
    assert rel_err(xb.grad, xa.grad) < 1e-4


def test_a_frozen_plain_model_writes_its_residual_sums_in_place_as_a_converted_one_does() -> None:
    """octify.freeze of the original is the baseline of every speed figure: its sums are written
    in place as the converted model's are (torch.fx records the original's `out += identity` as
    `out + identity`), and the original keeps its own code."""
    torch.manual_seed(0)
    model = randomize_bn(torchvision.models.resnet18()).eval()
    x = torch.randn(2, 3, 64, 64)
    frozen = octify.freeze(model, example_inputs=x)
    assert [n.target for n in frozen.graph.nodes if n.target in (operator.add, operator.iadd)] == [operator.iadd] * 8
    assert all("val" not in n.meta for n in frozen.graph.nodes)  # the shapes were for the decision only
    with torch.no_grad():
        assert rel_err(frozen(x), model(x)) < 1e-4

    class Head(nn.Module):  # a sum that broadcasts its first operand cannot be written into it
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(12, 4)

        def forward(self, x):
            return self.conv(x).mean((2, 3), keepdim=True) + self.fc(x.flatten(1)).view(-1, 4, 1, 1) + self.conv(x)

    net = Head().eval()
    small = torch.randn(2, 3, 2, 2)
    frozen = octify.freeze(net, example_inputs=small)
    assert [n.target for n in frozen.graph.nodes if n.target in (operator.add, operator.iadd)] == [operator.add, operator.iadd]
    with torch.no_grad():
        assert rel_err(frozen(small), net(small)) < 1e-5
    # The default inputs (3x224x224) do not fit the Linear: no shapes, so every sum stays out of place.
    frozen = octify.freeze(net)
    assert [n.target for n in frozen.graph.nodes if n.target in (operator.add, operator.iadd)] == [operator.add] * 2
    with torch.no_grad():
        assert rel_err(frozen(small), net(small)) < 1e-5


def test_latency_policy_keeps_a_model_plain_when_its_octave_layers_would_save_too_little() -> None:
    # DenseNet-121 at alpha 0.25: the latency policy keeps its thin dense layers plain, which would
    # leave only the transition convs octave (about 5% of the MACs saved), slower than plain.
    x = torch.randn(1, 3, 224, 224)
    model = torchvision.models.densenet121().eval()
    rec = octify.record_of(octify.convert(model, alpha=0.25, example_inputs=x, policy="latency-rules"))
    assert rec.converted == []
    reasons = {c.name: c.plain_reason for c in rec.convs}
    assert reasons["features.transition1.conv"] == (
        "latency policy: the octave layers left would save only 5% of the conv multiply-adds, "
        "too little to pay for their extra paths"
    )
    # At alpha 0.5 its dense layers are wide enough: half the MACs go, and the octave stays.
    half = octify.convert(model, alpha=0.5, example_inputs=x, policy="latency-rules")
    assert len(octify.record_of(half).converted) == 103
    assert octify.profile(half, x).macs / octify.profile(model, x).macs == pytest.approx(0.488, abs=0.005)
