"""What real networks need beyond the torchvision classifiers (issue 11): dense outputs, other
kinds of convs, Conv2d subclasses, resampling and shape reads. Small hand-written models."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify
from octify.nn import OctConv2d

from conftest import randomize_bn, rel_err

RTOL = 1e-5
LAST = "its output reaches a model output with no channel-mixing op between (the last layer: full resolution)"


def convert_quiet(model, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return octify.convert(model, example_inputs=x, **kw)


class TinySeg(nn.Module):
    """An encoder-decoder with a dense head: the logits are the model's output."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(32)
        self.mid = nn.Conv2d(32, 32, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(32 + 16, classes, 1)

    def forward(self, x):
        s = F.relu(self.stem(x))
        y = F.relu(self.bn(self.down(s)))
        y = self.up(F.relu(self.mid(y)))
        return self.head(torch.cat([y, s], 1))


def test_dense_head_is_the_last_layer_full_resolution_and_not_blocky():
    torch.manual_seed(0)
    model = randomize_bn(TinySeg()).eval()
    x = torch.randn(2, 3, 32, 32)
    out = convert_quiet(model, x)
    rec = octify.record_of(out)
    by = {c.name: c for c in rec.convs}
    # The head takes the pair (its input side is octave) and gives one full-resolution output.
    assert (by["head"].alpha_in, by["head"].alpha_out, by["head"].converted) == (16 / 48, 0.0, True)  # cat: 16 of 48 low
    assert rec.threaded.get("Upsample") == 1
    assert (by["mid"].alpha_in, by["mid"].alpha_out) == (0.5, 0.5)
    assert rec.count("merge") == 0  # the head's plain output needs no merge
    with torch.no_grad():
        y = out(x)
    # No 2x2 blocks: every class map varies inside 2x2 cells as much as the original's does.
    cells = y.unfold(2, 2, 2).unfold(3, 2, 2)  # (N, C, H/2, W/2, 2, 2)
    inside = (cells - cells.mean((-1, -2), keepdim=True)).abs().mean((0, 2, 3, 4, 5))
    assert (inside > 1e-3).all(), inside
    exact = convert_quiet(model, x, octave=1)
    with torch.no_grad():
        assert rel_err(exact(x), model(x)) <= RTOL


def test_explicit_alpha_for_keeps_a_dense_head_octave():
    model = TinySeg().eval()
    x = torch.randn(1, 3, 32, 32)
    rec = octify.record_of(convert_quiet(model, x, alpha_for={"head": 0.5}))
    by = {c.name: c for c in rec.convs}
    assert by["head"].alpha_out == 0.5 and rec.count("merge") == 1  # merged at the model output


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = F.relu(self.b(F.relu(self.a(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_a_classifier_keeps_its_last_conv_octave():
    # Global pooling and a Linear stand between the last conv and the output: nothing is dense there.
    rec = octify.record_of(convert_quiet(Classifier().eval(), torch.randn(1, 3, 16, 16)))
    assert {c.name: c.alpha_out for c in rec.convs} == {"stem": 0.0, "a": 0.5, "b": 0.5}


class Audio(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(1, 8, 5)
        self.b = nn.Conv1d(8, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.b(F.relu(self.a(x)))).mean(-1))


class Video(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 8, 3, padding=1)
        self.b = nn.Conv3d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.b(F.relu(self.a(x))).mean((2, 3, 4))


def test_conv1d_and_conv3d_models_convert_where_the_grid_allows_and_hold_the_oracle():
    # Conv1d / Conv3d have octave forms (tests/test_video_audio.py); the unpadded kernel-3 Conv1d
    # would take its low branch off the octave grid, so it stays plain and says why.
    audio, xa = Audio().eval(), torch.randn(2, 1, 64)
    with pytest.warns(UserWarning, match="none of the 2 convs was converted; no conv qualifies: .*padding does not keep the low branch on the octave grid"):
        out = octify.convert(audio, example_inputs=xa)  # channels-last must not choke on 3-D / 5-D weights
    with torch.no_grad():
        torch.testing.assert_close(out(xa), audio(xa))
    video, xv = Video().eval(), torch.randn(1, 3, 4, 16, 16)
    out = octify.convert(video, example_inputs=xv)
    assert [(c.name, c.alpha_in, c.alpha_out, c.plain_reason) for c in octify.record_of(out).convs] == [
        ("a", 0.0, 0.0, "stem (first conv on the model input)"), ("b", 0.0, 0.5, None)
    ]
    exact = octify.convert(video, example_inputs=xv, octave=1)
    with torch.no_grad():
        torch.testing.assert_close(exact(xv), video(xv), rtol=1e-4, atol=1e-5)


class PadSame(nn.Conv2d):
    """A Conv2d subclass with its own forward (as timm's Conv2dSame pads dynamically)."""

    def forward(self, x):
        return super().forward(F.pad(x, (1, 1, 1, 1)))


class WithSubclass(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.same = PadSame(8, 8, 3)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        y = self.b(self.same(F.relu(self.a(self.stem(x)))))
        return self.fc(y.mean((2, 3)))


def test_a_conv2d_subclass_never_goes_missing_from_the_record():
    model = WithSubclass().eval()
    x = torch.randn(1, 3, 16, 16)
    out = convert_quiet(model, x, octave=1)
    by = {c.name: c for c in octify.record_of(out).convs}
    assert set(by) == {"stem", "a", "same", "b"}
    assert by["same"].plain_reason == "PadSame is a Conv2d subclass with a forward of its own: kept whole, left plain"
    assert isinstance(out.a, OctConv2d) and isinstance(out.b, OctConv2d)
    with torch.no_grad():
        assert rel_err(out(x), model(x)) <= RTOL


class UNetish(nn.Module):
    """A decoder that upsamples to the skip connection's size read from its shape (as smp's
    decoders do), bilinear and nearest, a GroupNorm, and a size read with .size()."""

    def __init__(self, mode: str = "bilinear") -> None:
        super().__init__()
        self.mode = mode
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.enc = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(8, 32)
        self.dec = nn.Conv2d(32, 16, 3, padding=1)
        self.head = nn.Conv2d(32, 4, 3, padding=1)

    def forward(self, x):
        s = F.relu(self.stem(x))
        y = F.relu(self.gn(self.enc(s)))
        y = F.relu(self.dec(y))
        kw = {"align_corners": False} if self.mode == "bilinear" else {}
        y = F.interpolate(y, size=s.shape[-2:], mode=self.mode, **kw)
        n = y.size(0)
        y = (y * (y.ndim - 3) * (y.dim() - 3)).to(y.dtype)  # ndim and dim() are 4: a no-op that reads them
        return self.head(torch.cat([y, s], 1)).reshape(n, -1, x.shape[-2], x.shape[-1])


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [32, 29])
def test_resampling_and_shape_reads_need_no_merge(mode, size):
    torch.manual_seed(0)
    model = UNetish(mode).eval()
    x = torch.randn(2, 3, size, size)
    out = convert_quiet(model, x)
    rec = octify.record_of(out)
    assert rec.merges == [], rec.merges
    assert rec.threaded.get("F.interpolate") == 1 and rec.threaded.get("GroupNorm") == 1
    with torch.no_grad():
        assert out(x).shape == model(x).shape
        exact = convert_quiet(model, x, octave=1)
        assert octify.record_of(exact).merges == []
        assert rel_err(exact(x), model(x)) <= RTOL


def test_interpolate_to_a_size_puts_the_low_branch_on_the_octave_grid():
    class Resize(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.a = nn.Conv2d(8, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            y = F.interpolate(self.a(self.stem(x)), size=(21, 13), mode="bilinear", align_corners=True)
            return self.fc(self.b(y).mean((2, 3)))

    model = Resize().eval()
    x = torch.randn(1, 3, 16, 16)
    out = convert_quiet(model, x)
    assert octify.record_of(out).merges == []
    sizes = {}
    out.b.register_forward_pre_hook(lambda m, a: sizes.update(h=tuple(a[0][0].shape[-2:]), l=tuple(a[0][1].shape[-2:])))
    with torch.no_grad():
        out(x)
    assert sizes == {"h": (21, 13), "l": (11, 7)}


def test_group_norm_follows_whole_groups_and_aligns_when_it_must():
    class GN(nn.Module):
        def __init__(self, groups: int) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 12, 3, padding=1)
            self.a = nn.Conv2d(12, 12, 3, padding=1)
            self.gn = nn.GroupNorm(groups, 12)
            self.b = nn.Conv2d(12, 12, 3, padding=1)
            self.fc = nn.Linear(12, 2)

        def forward(self, x):
            return self.fc(self.b(self.gn(self.a(self.stem(x)))).mean((2, 3)))

    x = torch.randn(2, 3, 16, 16)
    for groups, aligns in ((6, 0), (3, 1)):  # 6 low channels: 3 whole groups of 2; groups of 4 need an align
        torch.manual_seed(groups)
        model = GN(groups).eval()
        with torch.no_grad():
            model.gn.weight.uniform_(0.5, 1.5)
            model.gn.bias.uniform_(-0.5, 0.5)
        out = convert_quiet(model, x, octave=1)
        rec = octify.record_of(out)
        assert type(out.gn) is octify.nn.OctGroupNorm and rec.count("align") == aligns and rec.count("merge") == 0
        with torch.no_grad():
            assert rel_err(out(x), model(x)) <= RTOL


def test_oct_group_norm_layer():
    gn = nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-1, 1)
    part = octify.Partition((0, 1, 2, 3), (4, 5, 6, 7))
    layer = octify.nn.OctGroupNorm.from_gn(gn, part)
    x = torch.randn(2, 8, 6, 6)
    h, l = layer((x[:, :4], x[:, 4:]))
    torch.testing.assert_close(torch.cat([h, l], 1), gn(x))
    with pytest.raises(ValueError, match="every one of the 4 groups must lie wholly on one branch"):
        octify.nn.OctGroupNorm(4, 8, partition=octify.Partition((0, 1, 2, 4), (3, 5, 6, 7)))


def test_a_model_reading_shapes_saves_and_reloads(tmp_path):
    model = UNetish().eval()
    x = torch.randn(1, 3, 32, 32)
    out = convert_quiet(model, x)
    path = octify.save(out, tmp_path / "u.safetensors")
    back = octify.load(path, model=model)
    with torch.no_grad():
        torch.testing.assert_close(back(x), out(x))
    assert any(n.target is octify.nn.functional.pair_size for n in back.graph.nodes)


class ReadsWeight(nn.Module):
    """Code that reads a conv's weight (a weight-norm penalty, a tied head) keeps working."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = self.b(F.relu(self.a(self.stem(x))))
        return self.fc(y.mean((2, 3))) * self.a.weight.abs().mean()


def test_a_conv_whose_weight_the_model_reads_stays_plain_with_the_reason():
    model = ReadsWeight().eval()
    x = torch.randn(1, 3, 16, 16)
    out = convert_quiet(model, x, octave=1)
    by = {c.name: c for c in octify.record_of(out).convs}
    assert by["a"].plain_reason == "the model reads a.weight itself" and type(out.a) is nn.Conv2d
    assert isinstance(out.b, OctConv2d)
    with torch.no_grad():
        assert rel_err(out(x), model(x)) <= RTOL



class UNetTransposed(nn.Module):
    """A hand-written U-Net that upsamples with transposed convs (k2 s2, and k3 s2 p1 op1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.mid = nn.Conv2d(32, 16, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(16, 16, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x):
        a = F.relu(self.stem(x))
        b = F.relu(self.down(a))
        y = F.relu(self.mid(torch.cat([F.relu(self.up(b)), a], 1)))
        return self.head(F.avg_pool2d(self.up2(y), 2))


def test_transposed_convs_become_octave_layers(tmp_path):
    torch.manual_seed(0)
    model = UNetTransposed().eval()
    x = torch.randn(2, 3, 32, 32)
    exact = convert_quiet(model, x, octave=1)
    with torch.no_grad():
        assert rel_err(exact(x), model(x)) <= RTOL
    out = convert_quiet(model, x)
    rec = octify.record_of(out)
    assert rec.merges == []
    by = {c.name: c for c in rec.convs}
    assert (by["up"].alpha_in, by["up"].alpha_out) == (0.5, 0.5) and type(out.up) is octify.nn.OctConvTranspose2d
    assert sum(p.numel() for p in out.up.parameters()) == sum(p.numel() for p in model.up.parameters())
    out.train()
    out(x).square().mean().backward()
    assert all(p.grad is not None for p in out.up.parameters())
    back = octify.load(octify.save(out.eval(), tmp_path / "u.safetensors"), model=model)
    with torch.no_grad():
        torch.testing.assert_close(back(x), out(x))


def test_a_transposed_conv_off_the_grid_stays_plain_with_the_reason():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.a = nn.Conv2d(8, 8, 3, padding=1)
            self.up = nn.ConvTranspose2d(8, 8, 3, stride=2)  # 7 -> 15; the low 4 -> 9, the grid needs 8
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.up(self.a(self.stem(x))).mean((2, 3)))

    out = convert_quiet(Odd().eval(), torch.randn(1, 3, 7, 7), min_size=2)
    by = {c.name: c for c in octify.record_of(out).convs}
    assert by["up"].plain_reason == "its low paths would leave the octave grid of its output"
    assert type(out.up) is nn.ConvTranspose2d



class Shuffles(nn.Module):
    """Sub-pixel upsampling (ESPCN) and space-to-depth, with an odd number of channel blocks."""

    def __init__(self, mid: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, mid, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.b = nn.Conv2d(mid // 4, 8, 3, padding=1)
        self.c = nn.Conv2d(32, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        y = self.b(self.shuffle(F.relu(self.a(self.stem(x)))))
        y = self.c(F.pixel_unshuffle(y, 2))
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("mid, aligns", [(16, 0), (12, 1)])  # 12 channels, alpha 0.5: 6 low, not whole blocks of 4
def test_pixel_shuffle_and_unshuffle_run_per_branch(mid, aligns):
    torch.manual_seed(0)
    model = Shuffles(mid).eval()
    x = torch.randn(2, 3, 16, 16)
    exact = convert_quiet(model, x, octave=1)
    with torch.no_grad():
        assert rel_err(exact(x), model(x)) <= RTOL
    rec = octify.record_of(convert_quiet(model, x))
    assert rec.count("merge") == 0 and rec.count("align") == aligns, rec.merges
    assert rec.threaded.get("PixelShuffle") == 1 and rec.threaded.get("torch.pixel_unshuffle") == 1
