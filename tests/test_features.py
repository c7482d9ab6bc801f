"""Feature distillation (``finetune(features=...)``), augmentation and bf16 autocast (issue 26):
where the original's modules end in the converted graph, exact under the oracle; the stages
``"auto"`` picks; the feature loss pulling a stage towards the original; the options' messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify
from octify.tune.augment import augment_batch
from octify.tune.features import FeatureTaps
from octify.tune.losses import scaled_mse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from textures import _Block as Block  # noqa: E402  (the example network's residual block)


class Staged(nn.Module):
    """Three stages at 32, 16 and 8 pixels, then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stage1 = nn.Sequential(Block(16, 16, 1), Block(16, 16, 1))
        self.stage2 = nn.Sequential(Block(16, 32, 2), Block(32, 32, 1))
        self.stage3 = Block(32, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.stage3(self.stage2(self.stage1(self.stem(x)))), 1).flatten(1))


def _smooth(n: int, generator=None) -> torch.Tensor:
    """Images whose energy is at low frequencies, as in photographs (white noise is all high)."""
    return F.interpolate(torch.randn(n, 3, 8, 8, generator=generator), size=32, mode="bilinear", align_corners=False)


def _staged() -> nn.Module:
    torch.manual_seed(0)
    net = Staged()
    for m in net.modules():  # the running statistics of the data, as a trained net has them
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        for _ in range(4):
            net(_smooth(32))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1  # and the usual momentum for what fine-tuning adds
    return net.eval()


@pytest.mark.parametrize("octave", [1, 2])
def test_the_taps_read_each_stage_merged_exactly_under_the_oracle(octave):
    net = _staged()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), octave=octave, min_size=8)
    taps = octify.record_of(oct_net).taps
    # Each stage end is named by its outermost module; the plain stem has no octave layers.
    assert [n for n, t in taps.items() if t["stage"]] == ["stage1", "stage2", "stage3"]
    assert taps["stage2"]["shape"] == [1, 32, 16, 16] and len(taps["stage2"]["low_channels"]) == 16
    reader = FeatureTaps(net, oct_net, ["stage1", "stage2.0", "stage3"], "test")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out, student = reader.student(x)
        want = net(x)
        teacher = reader.teacher_values()
    reader.close()
    assert [tuple(s.shape) for s in student] == [(3, 16, 32, 32), (3, 32, 16, 16), (3, 32, 8, 8)]
    torch.testing.assert_close(out, oct_net(x))  # the reader runs the converted model as it is
    if octave == 1:  # the oracle: every merged stage value is the original's
        for s, t in zip(student, teacher):
            torch.testing.assert_close(s, t, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    else:  # an octave down they differ (a random net: by about their own variance)
        assert all(0.05 < scaled_mse(s, t).item() < 3.0 for s, t in zip(student, teacher))
    assert not any(m._forward_hooks for m in net.modules())  # close() leaves the original as it was


def test_feature_distillation_pulls_the_stages_towards_the_original():
    net = _staged()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), min_size=8)
    g = torch.Generator().manual_seed(1)
    data = [_smooth(16, g) for _ in range(6)]
    held = [_smooth(64, g)]

    def stage_error(model: nn.Module) -> float:
        reader = FeatureTaps(net, model, ["stage2"], "test")
        with torch.no_grad():
            _, (s,) = reader.student(held[0])
            net(held[0])
            (t,) = reader.teacher_values()
        reader.close()
        return scaled_mse(s, t).item()

    common = dict(steps=30, lr=0.02, validation=held, keep_best="last", seed=0)
    plain = octify.finetune(net, oct_net, data, **common)
    feats = octify.finetune(net, oct_net, data, features="auto", feature_weight=5.0, **common)
    run = octify.record_of(feats).finetune
    assert run["features"] == ["stage1", "stage2", "stage3"] and run["feature_weight"] == 5.0
    assert octify.record_of(plain).finetune["features"] == []
    before, without, with_ = stage_error(oct_net), stage_error(plain), stage_error(feats)
    assert with_ < 0.8 * before and with_ < without, (before, without, with_)
    assert not any(m._forward_hooks for m in net.modules())


def test_features_say_what_they_expected():
    net = _staged()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), min_size=8)
    data = [torch.randn(4, 3, 32, 32)]
    with pytest.raises(ValueError, match=r"no module output named stage9 in the converted model \(known: stem.0, .*Hint: name modules"):
        octify.finetune(net, oct_net, data, steps=1, features=["stage9"], keep_best="last")
    with pytest.raises(ValueError, match="features must be None, 'auto' or module names of the original .* found 3"):
        octify.finetune(net, oct_net, data, steps=1, features=3)
    with pytest.raises(ValueError, match="features= needs a model from octify.convert.* found a Staged without one"):
        octify.finetune(net, _staged(), data, steps=1, features="auto", keep_best="last")
    with pytest.raises(TypeError, match=r"augment must be True or False, found 'yes' \(str\)"):
        octify.finetune(net, oct_net, data, steps=1, augment="yes")
    with pytest.raises(ValueError, match=r"augment=True crops and flips images .* found a torch.float32 tensor of shape \(4, 3, 32\)"):
        augment_batch(torch.randn(4, 3, 32))
    # A graph rewritten after conversion no longer has the nodes the record names.
    changed = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), min_size=8)
    tap = octify.record_of(changed).taps["stage2"]
    node = next(n for n in changed.graph.nodes if n.name == tap["high"])
    node.name = "renamed"
    with pytest.raises(ValueError, match=r"the converted graph has changed since conversion \(stage2 no longer found\)"):
        octify.finetune(net, changed, data, steps=1, features=["stage2"], keep_best="last")


def test_augmentation_crops_resizes_and_flips_each_sample_alike_across_frames():
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 32).expand(8, 3, 32, 32).contiguous()  # brighter to the right
    out = augment_batch(ramp)
    assert out.shape == ramp.shape
    rows = out[:, 0, 16]
    steps = rows[:, 1:] - rows[:, :-1]
    increasing, decreasing = (steps >= -1e-6).all(1), (steps <= 1e-6).all(1)
    assert bool((increasing | decreasing).all()) and 0 < int(decreasing.sum()) < 8  # some flipped, some not
    spans = rows.max(1).values - rows.min(1).values
    assert bool((spans <= 1.0 + 1e-6).all()) and bool((spans < 0.99).any())  # crops: a part of the ramp, zoomed
    flat = torch.full((2, 3, 16, 16), 0.25)
    torch.testing.assert_close(augment_batch(flat), flat)  # a constant image stays what it is
    video = torch.randn(2, 3, 1, 24, 24).expand(2, 3, 4, 24, 24).contiguous()
    v = augment_batch(video)
    assert v.shape == video.shape and torch.equal(v[:, :, 0], v[:, :, 3])  # one crop for every frame
    torch.manual_seed(5)
    a = augment_batch(ramp)
    torch.manual_seed(5)
    torch.testing.assert_close(augment_batch(ramp), a)  # drawn from torch's seeded generator


def test_bf16_autocast_runs_both_models_in_bfloat16_and_keeps_float32_weights():
    net = _staged()
    oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), min_size=8)
    seen = []
    conv = oct_net.get_submodule("stage2.0.conv2")
    hook = conv.register_forward_hook(lambda m, a, out: seen.append(out[0].dtype))
    data = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    before = {k: v.clone() for k, v in oct_net.state_dict().items()}
    tuned = octify.finetune(net, oct_net, data, steps=2, bf16=True, augment=True, keep_best="last", inplace=True)
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in tuned.parameters())
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items() if v.is_floating_point())
    run = octify.record_of(tuned).finetune
    assert (run["bf16"], run["augment"]) == (True, True)
