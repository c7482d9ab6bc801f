"""Octave beyond images: torchvision's video networks (Conv3d, the octave on H and W, time kept)
and a 1-D audio CNN (M5 on the raw waveform, examples/audio.py) convert with most convs octave,
hold the oracle (octave=1 reproduces the original, rel err <= 1e-4), cut the MACs, and train a
step. Whole torchvision video networks are ``slow``; the toy networks and M5 run in the fast loop.
"""

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import octify
from octify.cli import app as cli_app
from octify.nn import OctBatchNorm1d, OctBatchNorm3d, OctConv1d, OctConv3d

from conftest import cli_env, randomize_bn, rel_err

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _m5() -> nn.Module:
    spec = importlib.util.spec_from_file_location("_octify_example_audio", EXAMPLES / "audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


def _convert(model: nn.Module, x: torch.Tensor, **kw) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return octify.convert(model, example_inputs=x, alpha=0.5, **kw)


def _oracle(model: nn.Module, x: torch.Tensor) -> float:
    exact = _convert(model, x, octave=1)
    with torch.no_grad():
        return rel_err(exact(x), model(x))


def _train_step(converted: nn.Module, x: torch.Tensor, classes: int) -> None:
    converted.train()
    opt = torch.optim.SGD(converted.parameters(), lr=0.01)
    before = {n: p.detach().clone() for n, p in converted.named_parameters()}
    out = converted(x)
    assert tuple(out.shape) == (x.shape[0], classes) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(x.shape[0]) % classes).backward()
    octs = [m for m in converted.modules() if isinstance(m, (OctConv1d, OctConv3d))]
    assert octs
    for m in octs:
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    opt.step()
    moved = {n for n, p in converted.named_parameters() if not torch.equal(p, before[n])}
    # Every parameter with a gradient moves (a conv bias right before a training-mode BN has none).
    assert moved == {n for n, p in converted.named_parameters() if p.grad is not None and p.grad.abs().max() > 1e-6}
    assert len(moved) >= len(before) * 3 // 4


def _macs_ratio(model: nn.Module, converted: nn.Module, x: torch.Tensor) -> float:
    return octify.profile(converted, x).macs / octify.profile(model, x).macs


# -- audio: M5 on the raw waveform --------------------------------------------------------------
def test_m5_converts_holds_the_oracle_cuts_macs_and_trains():
    torch.manual_seed(0)
    model = randomize_bn(_m5()).eval()
    x = torch.randn(2, 1, 16000)
    assert _oracle(model, x) <= 1e-4
    converted = _convert(model, x)
    rec = octify.record_of(converted)
    assert [(c.name, c.alpha_in, c.alpha_out) for c in rec.convs] == [
        ("0", 0.0, 0.0), ("4", 0.0, 0.5), ("8", 0.5, 0.5), ("12", 0.5, 0.5)
    ]
    assert rec.count("merge") == 0  # the pair runs to the global pooling, which merges by channels
    assert sum(isinstance(m, OctBatchNorm1d) for m in converted.modules()) == 3
    # The 1-D low grid is half as long (not a quarter of the area): a mid layer at alpha 0.5 costs
    # 0.625 of its MACs, the first 0.75; the plain stem is 30 % of M5's MACs.
    assert _macs_ratio(model, converted, x) == pytest.approx(0.780, abs=0.005)
    _train_step(converted, x, 35)


def test_m5_at_octave_4_goes_below_three_quarters_of_the_macs():
    model = _m5().eval()
    x = torch.randn(1, 1, 16000)
    assert _macs_ratio(model, _convert(model, x, octave=4), x) <= 0.75


class Pools1d(nn.Module):
    """Every 1-D pooling the rules know, between octave convs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 5, padding=2)
        self.a = nn.Conv1d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.b = nn.Conv1d(8, 8, 3, padding=1)
        self.c = nn.Conv1d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool1d(3)
        self.fc = nn.Linear(8 * 3 + 8, 4)

    def forward(self, x):
        y = F.relu(self.bn(self.a(self.stem(x))))
        y = nn.functional.max_pool1d(y, 3, 2, 1)
        y = F.avg_pool1d(self.b(y), 2)
        y = self.c(y)
        return self.fc(torch.cat([self.pool(y).flatten(1), y.mean(-1)], 1))


def test_1d_pooling_runs_per_branch_and_holds_the_oracle():
    model = randomize_bn(Pools1d()).eval()
    x = torch.randn(2, 2, 37)
    assert _oracle(model, x) <= 1e-4
    converted = _convert(model, x)
    rec = octify.record_of(converted)
    assert len(rec.converted) == 3
    # Adaptive pooling to 3 keeps a pair (3 high, 2 low samples): flatten, which has no rule, merges it.
    assert [(m.kind, m.target) for m in rec.merges] == [("merge", ".flatten()")]
    assert rec.threaded.get("F.max_pool1d") == 1 and rec.threaded.get("torch.avg_pool1d") == 1
    assert rec.threaded.get("AdaptiveAvgPool1d") == 1 and rec.threaded.get(".mean()") == 1
    _train_step(converted, x, 4)


# -- video: a (2+1)D toy network in the fast loop -------------------------------------------------
class Video2Plus1d(nn.Module):
    """R(2+1)D / S3D-style: a (1, k, k) spatial conv then a (k, 1, 1) temporal conv, BN3d, a
    residual sum, 3-D max / average pooling, adaptive pooling to a size and to 1."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, (3, 7, 7), (1, 2, 2), (1, 3, 3))
        self.spatial = nn.Conv3d(8, 12, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(12)
        self.temporal = nn.Conv3d(12, 8, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.bn2 = nn.BatchNorm3d(8)
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        self.down = nn.Conv3d(8, 16, 3, stride=2, padding=1)
        self.avg = nn.AvgPool3d((1, 2, 2))
        self.adapt = nn.AdaptiveAvgPool3d((1, 2, 2))
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.bn2(self.temporal(F.relu(self.bn1(self.spatial(x))))))
        y = self.pool(x + y)
        y = self.avg(self.down(y))
        return self.fc(self.adapt(y).flatten(1))


def test_2plus1d_video_net_keeps_time_on_both_branches_and_holds_the_oracle():
    model = randomize_bn(Video2Plus1d()).eval()
    x = torch.randn(2, 3, 4, 33, 31)
    assert _oracle(model, x) <= 1e-4
    converted = _convert(model, x, min_size=2)
    rec = octify.record_of(converted)
    assert {c.name: (c.alpha_in, c.alpha_out) for c in rec.convs} == {
        "stem": (0.0, 0.0), "spatial": (0.0, 0.5), "temporal": (0.5, 0.5), "down": (0.5, 0.5)
    }
    # The stem's plain map added to a pair is split; the pair pooled to (1, 2, 2) merges before flatten.
    assert [(m.kind, m.target) for m in rec.merges] == [("split", "operator.add"), ("merge", ".flatten()")]
    assert rec.threaded.get("MaxPool3d") == 1 and rec.threaded.get("AvgPool3d") == 1 and rec.threaded.get("AdaptiveAvgPool3d") == 1
    temporal = converted.get_submodule("temporal")
    assert isinstance(temporal, OctConv3d) and temporal.kernel_size == (3, 1, 1) and not temporal.octave_time
    assert sum(isinstance(m, OctBatchNorm3d) for m in converted.modules()) == 2
    seen = {}
    temporal.register_forward_hook(lambda m, i, o: seen.update(shapes=[tuple(t.shape) for t in o]))
    with torch.no_grad():
        converted(x)
    assert seen["shapes"] == [(2, 4, 4, 17, 16), (2, 4, 4, 9, 8)]  # time kept on the low branch
    _train_step(converted, x, 5)


def test_video_net_channels_last_applies_to_4d_tensors_only():
    model = Video2Plus1d().eval()
    converted = _convert(model, torch.randn(1, 3, 4, 32, 32))
    weights = [p for p in converted.parameters() if p.dim() == 5]
    assert weights and all(p.is_contiguous() for p in weights)


# -- torchvision's video networks (slow) -------------------------------------------------------
VIDEO = {
    # name: (input of the oracle and the train step, convs octave / all at that size)
    "r3d_18": ((2, 3, 4, 64, 64), (16, 20)),
    "mc3_18": ((2, 3, 4, 64, 64), (16, 20)),
    "r2plus1d_18": ((2, 3, 4, 64, 64), (29, 37)),
    # S3D ends in a fixed AvgPool3d((2, 7, 7)): it needs at least 16 frames of 224 x 224.
    "s3d": ((1, 3, 16, 224, 224), (64, 78)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VIDEO))
def test_torchvision_video_model(name):
    from torchvision.models import video

    torch.manual_seed(0)
    model = randomize_bn(getattr(video, name)()).eval()
    shape, (n_oct, n_all) = VIDEO[name]
    x = torch.randn(shape)
    assert _oracle(model, x) <= 1e-4
    converted = _convert(model, x)
    rec = octify.record_of(converted)
    assert (len(rec.converted), len(rec.convs)) == (n_oct, n_all)
    assert rec.count("merge") == 0
    assert _macs_ratio(model, converted, x) <= 0.75
    if name == "r2plus1d_18":  # the temporal (3, 1, 1) convs run on each branch
        temporal = [m for m in converted.modules() if isinstance(m, OctConv3d) and m.kernel_size == (3, 1, 1)]
        assert len(temporal) >= 6 and all(m.alpha_in == m.alpha_out == 0.5 for m in temporal[1:6])
    _train_step(converted, x, 400)


# -- the CLI takes 3-D and 5-D input shapes ------------------------------------------------------
def test_cli_converts_the_audio_example_with_a_3d_input_shape(tmp_path):
    out = tmp_path / "m5_oct.safetensors"
    result = CliRunner(env=cli_env(200)).invoke(
        cli_app, ["convert", str(EXAMPLES / "audio.py"), "--input-shape", "1,1,16000", "--output", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    from octify.cli.saved import load_model

    model = load_model(str(out)).model  # the original made again from audio.py, as the command line reads the file
    assert sum(isinstance(m, OctConv1d) for m in model.modules()) == 3
    assert tuple(model(torch.randn(1, 1, 16000)).shape) == (1, 35)


# -- freezing: batch norms fold into 1-D and 3-D convs too -----------------------------------------
@pytest.mark.parametrize("build, x", [(Video2Plus1d, torch.randn(2, 3, 4, 33, 31)), (_m5, torch.randn(2, 1, 4000))])
def test_freeze_folds_1d_and_3d_batch_norms(build, x):
    model = randomize_bn(build()).eval()
    converted = _convert(model, x)
    frozen = octify.freeze(converted)
    assert not [m for m in frozen.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d, OctBatchNorm1d, OctBatchNorm3d))]
    assert any(isinstance(m, (OctConv1d, OctConv3d)) and m.weight_low is not None for m in frozen.modules())
    with torch.no_grad():
        assert rel_err(frozen(x), converted(x)) <= 1e-5


def _conv_kernels(model: nn.Module, x: torch.Tensor) -> set:
    """The aten convolution kernels ``model(x)`` runs."""
    from torch.profiler import profile

    with torch.no_grad(), profile() as prof:
        model(x)
    kernels = {"aten::slow_conv3d_forward", "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::slow_conv_dilated3d"}
    return {e.key for e in prof.key_averages() if e.key in kernels}


@pytest.mark.parametrize("memory_format", ["preserve", "channels_last"])
def test_freeze_sends_every_3d_conv_to_onednn_when_asked(memory_format):
    """At batch 1 PyTorch runs small conv3d with its slow vol2col kernel; conv3d="onednn" runs
    every one (plain and octave) on oneDNN, the same function, TorchScript included."""
    model = randomize_bn(Video2Plus1d()).eval()
    x = torch.randn(1, 3, 4, 33, 31)
    converted = _convert(model, x, min_size=2)
    for original in (model, converted):
        default = octify.freeze(original, memory_format=memory_format)
        fast = octify.freeze(original, memory_format=memory_format, conv3d="onednn")
        assert "aten::slow_conv3d_forward" in _conv_kernels(default, x)
        assert _conv_kernels(fast, x) == {"aten::mkldnn_convolution"}
        with torch.no_grad():
            assert rel_err(fast(x), original(x)) <= 1e-5
            assert rel_err(torch.jit.script(fast)(x), original(x)) <= 1e-5
            # Inputs oneDNN does not take (float64) keep torch's kernels (the BN folded in float32 bounds the error).
            assert rel_err(fast.double()(x.double()), original.double()(x.double())) <= 1e-6
        original.float()
    plain = octify.freeze(model, conv3d="onednn")
    assert {type(m).__name__ for m in plain.modules() if isinstance(m, nn.Conv3d)} == {"OneDNNConv3d"}
    # Writes to a weight are seen: no copy of it is kept.
    with torch.no_grad():
        plain.get_submodule("down").weight.zero_()
        plain.get_submodule("down").bias.fill_(1.0)
        assert plain.get_submodule("down")(torch.randn(1, 8, 2, 5, 5)).eq(1.0).all()
    with pytest.raises(ValueError, match=r"octify.freeze: conv3d must be 'torch' or 'onednn', found 'mkldnn'"):
        octify.freeze(converted, conv3d="mkldnn")


# -- the report: Conv1d / Conv3d MACs counted like Conv2d's, the theory over the resampled axes ----
@pytest.mark.parametrize("build, x, want", [
    (Video2Plus1d, torch.randn(1, 3, 4, 32, 32), {"spatial": 0.625, "temporal": 0.4375, "down": 0.625}),
    (_m5, torch.randn(1, 1, 16000), {"4": 0.75, "8": 0.625, "12": 0.625}),
])
def test_compare_counts_1d_and_3d_convs_and_their_theory(build, x, want):
    model = build().eval()
    rows = octify.compare(model, _convert(model, x), x).convs
    assert {r.name: round(r.theoretical_macs_ratio, 4) for r in rows} == want
    for r in rows:
        assert r.macs_after / r.macs_before == pytest.approx(r.theoretical_macs_ratio, abs=1e-3)
