"""The CNN files people write for a training script (issue 22): view-style flattens under
channels-last, quiet probing, and the patterns of hand-written CIFAR models. Small models written
here in the styles of such files."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify

from conftest import pipe_env, rel_err


def convert_both(net: nn.Module, x: torch.Tensor, **kw) -> nn.Module:
    """The octave=1 conversion held to the oracle, then the octave-2 one (returned), run once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # merges in front of ops without a rule are expected here
        exact = octify.convert(net, example_inputs=x, octave=1, **kw)
        converted = octify.convert(net, example_inputs=x, **kw)
    with torch.no_grad():
        want = net(x)
        assert rel_err(exact(x), want) <= 1e-5
        assert converted(x).shape == want.shape
    return converted


def _flatten_view(x):
    return x.view(x.size(0), -1)


def _flatten_fixed(x):
    return x.view(-1, 32 * 8 * 8)


def _flatten_torch(x):
    return torch.flatten(x, 1)


def _squeeze(x):
    return F.adaptive_avg_pool2d(x, 1).squeeze(-1).squeeze(-1)


def _permute_view(x):
    return x.permute(0, 2, 3, 1).contiguous().view(x.size(0), -1)


def _pool_view(x):
    return F.avg_pool2d(x, 2).view(x.size(0), -1)


def _view_as(x):
    return x.view_as(torch.flatten(x, 1))


HEADS = {
    "view(n, -1)": (_flatten_view, 32 * 8 * 8),
    "view(-1, CHW)": (_flatten_fixed, 32 * 8 * 8),
    "torch.flatten": (_flatten_torch, 32 * 8 * 8),
    "squeeze": (_squeeze, 32),
    "permute + view": (_permute_view, 32 * 8 * 8),
    "pool + view": (_pool_view, 32 * 4 * 4),
    "view_as": (_view_as, 32 * 8 * 8),
}


class FlatHead(nn.Module):
    """A CIFAR-style net whose last octave conv's pair is flattened by hand (merged before it)."""

    def __init__(self, head: str) -> None:
        super().__init__()
        self.flatten, features = HEADS[head]
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(features, 10)

    def forward(self, x):
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.fc(self.flatten(out))


class ShuffleMid(nn.Module):
    """A channel shuffle by view / transpose / view in the middle of the network (ShuffleNet's)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x)))
        n, c, h, w = out.size()
        out = out.view(n, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
        return self.conv3(out)


@pytest.mark.parametrize("memory_format", ["channels_last", "preserve"])
@pytest.mark.parametrize("head", list(HEADS))
def test_view_style_code_converts_in_either_layout_and_holds_the_oracle(head, memory_format):
    torch.manual_seed(0)
    net = FlatHead(head).eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the merge before the flatten is expected
        exact = octify.convert(net, example_inputs=x, octave=1, memory_format=memory_format)
        converted = octify.convert(net, example_inputs=x, memory_format=memory_format)
    with torch.no_grad():
        want = net(x)
        assert rel_err(exact(x), want) <= 1e-5
        assert converted(x).shape == want.shape
        assert converted(x.contiguous(memory_format=torch.channels_last)).shape == want.shape
    rec = octify.record_of(converted)
    reads = [m for m in rec.merges if m.kind == "layout"]
    if head in ("view(n, -1)", "view(-1, CHW)", "pool + view", "view_as"):
        assert len(reads) == 1 and reads[0].reason.startswith(f"{reads[0].target} reads the memory layout"), rec.merges
    else:  # flatten and squeeze take any layout, and the user's .contiguous() is kept: nothing inserted
        assert reads == []
    assert any(c.converted for c in rec.convs)


def test_a_view_in_the_middle_of_the_network_holds_the_oracle_in_channels_last():
    torch.manual_seed(0)
    converted = convert_both(ShuffleMid().eval(), torch.randn(1, 3, 16, 16), min_size=1)
    assert [m.target for m in octify.record_of(converted).merges if m.kind == "layout"] == [".view()"]


_SMALL_MAPS = """
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        out = F.relu(self.conv2(F.relu(self.conv1(x))))  # 8x8: a pair of 8x8 and 4x4
        out = F.max_pool2d(out, 2)  # 4x4 and 2x2
        out = F.avg_pool2d(out, 3, 1, 1) if self.training else F.avg_pool2d(out, 3, 1)  # 3x3 on the 2x2 low map
        out = self.conv3(out)
        out = F.avg_pool2d(out, out.size(2))  # a window over the whole map: global pooling
        return self.fc(out.view(out.size(0), -1))
"""


def test_a_conversion_that_succeeds_prints_only_octifys_own_report(tmp_path):
    """torch logs a traceback when an op fails on fake tensors (the 3x3 window on the 2x2 low
    map); the pass tries nothing it knows will fail, silences torch's probe loggers, and says what
    it decided in its own words."""
    model = tmp_path / "small_maps.py"
    model.write_text(_SMALL_MAPS)
    proc = subprocess.run([sys.executable, "-m", "octify.cli", "convert", str(model), "-i", "1,3,16,16", "-o", str(tmp_path / "o.safetensors")],
                          capture_output=True, text=True, env=pipe_env(), timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not [line for line in proc.stdout.splitlines() if re.match(r"[EWID]\d{4} ", line) or "Traceback" in line or "torch/" in line]
    text = " ".join(proc.stdout.split())
    assert "merge before torch.avg_pool2d (1): torch.avg_pool2d rule declined: avg_pool2d kernel 3x3 on the 2x2 low map: the window does not fit" in text
    assert "Inserted: 1 merge, 1 layout" in text  # the whole-map pool needs none; the view its contiguous input


def test_a_window_over_the_whole_map_pools_each_branch_globally():
    torch.manual_seed(0)
    namespace: dict = {}
    exec(_SMALL_MAPS, namespace)
    converted = convert_both(namespace["Net"]().eval(), torch.randn(2, 3, 16, 16), min_size=1)
    rec = octify.record_of(converted)
    assert rec.threaded.get("torch.avg_pool2d") == 1  # the global one (the 3x3 one merged)
    assert [m.target for m in rec.merges if m.kind == "merge"] == ["torch.avg_pool2d"]


# --------------------------------------------------------------------------- the last merges in timm's families


class ECA(nn.Module):
    """timm's EcaModule: a Conv1d across the channels of the pooled descriptor, a gate expanded to the map."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


class GroupNorm1(nn.GroupNorm):
    """timm's GroupNorm1: GroupNorm(1, C) through F.group_norm."""

    def __init__(self, channels: int) -> None:
        super().__init__(1, channels)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class Blocks(nn.Module):
    """One residual block per pattern: ECA, PoolFormer's GroupNorm(1) + pool(x) - x + layer scale,
    a dual-path block's channel slices and concatenation, a one-element learnable scale."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.eca = ECA()
        self.norm = GroupNorm1(c)
        self.module_norm = nn.GroupNorm(1, c)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.scale = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
        self.one = nn.Parameter(torch.tensor([1.5]))
        self.dual = nn.Conv2d(c, c + 4, 1)  # 16 residual channels and 4 dense ones
        self.head = nn.Conv2d(c + 4, 8, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.eca(torch.relu(self.conv1(x)))
        y = self.norm(x)
        x = x + self.scale * (self.pool(y) - y)
        x = self.module_norm(x) * self.one
        d = self.dual(x)
        resid, dense = x + d[:, :16], d[:, 16:]
        return self.head(torch.cat([resid, dense], 1))


def test_the_timm_patterns_thread_pairs_without_a_merge_and_hold_the_oracle():
    torch.manual_seed(0)
    net = Blocks().eval()
    with torch.no_grad():
        for p in (net.norm.weight, net.norm.bias, net.module_norm.weight, net.module_norm.bias):
            p.copy_(torch.randn_like(p))
    converted = convert_both(net, torch.randn(2, 3, 16, 16), min_size=1)
    rec = octify.record_of(converted)
    assert [m for m in rec.merges if m.kind in ("merge", "align")] == []
    assert rec.threaded.get(".expand_as()") == 1 and rec.threaded.get("F.group_norm") == 1 and rec.threaded.get("GroupNorm") == 1
    # The dual-path conv's output is cut at 16: each range gets its own low channels, so both are pairs.
    dual = converted.get_submodule("dual")
    assert dual.out_partition == octify.Partition.split_at(20, 0.5, (16,)) == octify.Partition(
        tuple(range(8)) + (16, 17), tuple(range(8, 16)) + (18, 19))


def test_channel_slices_cut_the_conv_partition_so_that_every_slice_is_a_pair():
    class Slices(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.conv = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Conv2d(2, 4, 1)

        def forward(self, x):
            y = torch.relu(self.conv(self.stem(x)))  # its pair's low channels are 4..7 (by default)
            return self.head(y[:, 1:3]), self.head(y[:, 5:7])

    torch.manual_seed(0)
    net = Slices().eval()
    x = torch.randn(1, 3, 16, 16)
    plan_free = octify.convert(net, example_inputs=x, octave=1, min_size=1)
    with torch.no_grad():
        for got, want in zip(plan_free(x), net(x)):
            assert rel_err(got, want) <= 1e-5
    # The plan cuts the conv's output at 1, 3, 5 and 7: every slice is then a pair.
    assert octify.convert(net, example_inputs=x, min_size=1).conv.out_partition == octify.Partition.split_at(8, 0.5, (1, 3, 5, 7))


class PerPixelNorm(nn.Module):
    """ConvNeXt's block: depthwise conv, LayerNorm over the channels of each pixel, an MLP, a residual."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem, self.down = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 2, stride=2)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm, self.fc = nn.LayerNorm(c), nn.Linear(c, c)
        self.head = nn.Conv2d(c, 8, 1)

    def forward(self, x):
        x = self.down(self.stem(x))
        y = self.fc(self.norm(self.dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return self.head(x + y)


class PositionAttention(nn.Module):
    """BoTNet's block: a qkv conv, the map as tokens, attention over positions."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem, self.conv1 = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.qkv, self.out = nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        x = torch.relu(self.conv1(self.stem(x)))
        b, c, h, w = x.shape
        q, k, v = torch.split(self.qkv(x), [c, c, c], dim=1)
        attn = (q.reshape(b, c, -1).transpose(-1, -2) @ k.reshape(b, c, -1)).softmax(-1)
        y = (attn @ v.reshape(b, c, -1).transpose(-1, -2)).transpose(-1, -2).reshape(b, c, h, w)
        return self.out(y) + x


@pytest.mark.parametrize("model, plain, reason", [
    (PerPixelNorm, {"down", "dw"}, "its channels are normalised or mixed at each pixel (LayerNorm after a permute)"),
    (PositionAttention, {"qkv"}, "attention over positions (operator.matmul of the flattened map)"),
])
def test_a_region_with_no_per_branch_form_stays_plain_whole_instead_of_merging_in_it(model, plain, reason):
    torch.manual_seed(0)
    rec = octify.record_of(convert_both(model().eval(), torch.randn(1, 3, 16, 16), min_size=1))
    assert rec.count("merge") == 0, rec.merges
    outs = {c.name: c for c in rec.convs}
    assert {n for n, c in outs.items() if c.alpha_out == 0.0 and c.plain_reason and c.plain_reason.startswith(reason)} == plain, rec.convs
