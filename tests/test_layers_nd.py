"""The layer tests of OctConv2d repeated for the 1-D and 3-D octave layers (OctConv1d, OctConv3d,
OctBatchNorm1d, OctBatchNorm3d): shapes at odd sizes, exactness against nn.Conv1d / nn.Conv3d at
octave=1 by hypothesis, gradients, errors, TorchScript.

OctConv1d halves its one axis; OctConv3d halves H and W and keeps time (T) unless
``octave_time=True``. At octave=1 every layer is the same linear map as the plain one.
"""

from typing import List, Tuple, Union

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from octify.nn import OctBatchNorm1d, OctBatchNorm3d, OctConv1d, OctConv3d, OctaveMerge, OctaveSplit, Partition
from octify.nn._resample import check_low, downsample

from conftest import randomize_bn, rel_err

HYPO = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONVS = {1: (nn.Conv1d, OctConv1d), 3: (nn.Conv3d, OctConv3d)}
ALPHAS = [0.0, 0.25, 0.5, 0.8, 1.0]


def to_pair(x: Tensor, part: Partition) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """The octave=1 input of a layer for the plain ``x`` split by ``part``."""
    high, low = x[:, list(part.high)], x[:, list(part.low)]
    if not part.low:
        return high
    if not part.high:
        return low
    return high, low


def from_pair(y: Union[Tensor, Tuple[Tensor, Tensor]], part: Partition) -> Tensor:
    """The plain tensor of an octave=1 output (both branches on one grid)."""
    if isinstance(y, Tensor):
        high, low = (y, None) if not part.low else (None, y)
    else:
        high, low = y
    ref = high if high is not None else low
    out = ref.new_empty(ref.shape[0], part.channels, *ref.shape[2:])
    if high is not None:
        out[:, list(part.high)] = high
    if low is not None:
        assert low.shape[2:] == ref.shape[2:]
        out[:, list(part.low)] = low
    return out


def shapes(y) -> List[Tuple[int, ...]]:
    return [tuple(t.shape) for t in (y if isinstance(y, tuple) else (y,))]


@st.composite
def conv_cases(draw, nd: int):
    kind = draw(st.sampled_from(["dense", "groups2", "depthwise"]))
    if kind == "dense":
        groups, cin, cout = 1, draw(st.integers(1, 8)), draw(st.integers(1, 8))
    elif kind == "depthwise":
        groups = cin = cout = draw(st.integers(2, 8))
    else:
        groups, cin, cout = 2, 2 * draw(st.integers(1, 3)), 2 * draw(st.integers(1, 3))
    # 3-D: the (2+1)D factorised kernels of R(2+1)D and S3D, (1, k, k) and (k, 1, 1), among others.
    if nd == 3:
        kernel = draw(st.sampled_from([(1, 3, 3), (3, 1, 1), (3, 3, 3), (2, 3, 1), (1, 1, 1)]))
        stride = draw(st.sampled_from([(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 1, 1)]))
    else:
        kernel = (draw(st.integers(1, 7)),)
        stride = (draw(st.integers(1, 4)),)
    dilation = draw(st.integers(1, 2))
    same = tuple(dilation * (k - 1) // 2 for k in kernel)
    padding = draw(st.one_of(st.just(same), st.tuples(*[st.integers(0, 2)] * nd)))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    eff = [dilation * (k - 1) + 1 for k in kernel]
    size = tuple(draw(st.integers(max(e, 3), 9 if nd == 3 else 40)) for e in eff)
    split = 1 if kind == "depthwise" else groups
    a_in, a_out = draw(st.sampled_from(ALPHAS)), draw(st.sampled_from(ALPHAS))
    return dict(
        cin=cin, cout=cout, kernel=kernel, stride=stride, dilation=dilation, padding=padding, padding_mode=padding_mode,
        bias=draw(st.booleans()), groups=groups, size=size, pin=Partition.split(cin, a_in, split),
        pout=Partition.split(cout, a_out, split), seed=draw(st.integers(0, 2**31 - 1)),
    )


def _exact(nd: int, c: dict) -> None:
    torch.manual_seed(c["seed"])
    plain_cls, oct_cls = CONVS[nd]
    conv = plain_cls(
        c["cin"], c["cout"], c["kernel"], c["stride"], c["padding"], c["dilation"], c["groups"], c["bias"], c["padding_mode"]
    )
    layer = oct_cls.from_conv(conv, octave=1, in_partition=c["pin"], out_partition=c["pout"])
    x = torch.randn(2, c["cin"], *c["size"])
    got = from_pair(layer(to_pair(x, c["pin"])), c["pout"])
    assert rel_err(got, conv(x)) <= 1e-4
    w, b = layer.to_dense_weight()
    assert torch.equal(w, conv.weight.detach())
    assert (b is None) == (conv.bias is None) and (b is None or torch.equal(b, conv.bias.detach()))


@HYPO
@given(conv_cases(1))
def test_octconv1d_is_exact_at_octave_1(c):
    _exact(1, c)


@HYPO
@given(conv_cases(3))
def test_octconv3d_is_exact_at_octave_1(c):
    _exact(3, c)


def test_octconv3d_octave_time_is_exact_at_octave_1():
    conv = nn.Conv3d(6, 8, 3, padding=1, stride=(2, 1, 1))
    layer = OctConv3d.from_conv(conv, alpha=0.5, octave=1, octave_time=True)
    x = torch.randn(2, 6, 5, 7, 7)
    assert rel_err(from_pair(layer((x[:, :3], x[:, 3:])), layer.out_partition), conv(x)) <= 1e-5


# -- shapes at odd sizes ----------------------------------------------------------------------
def test_octconv1d_shapes_at_odd_lengths():
    first = OctConv1d(1, 16, 80, stride=4, padding=38, alpha=(0.0, 0.5))
    high, low = first(torch.randn(2, 1, 1001))
    assert shapes((high, low)) == [(2, 8, 250), (2, 8, 125)]
    mid = OctConv1d(16, 24, 3, padding=1, stride=2, alpha=0.5)
    assert shapes(mid((high, low))) == [(2, 12, 125), (2, 12, 63)]  # ceil(125 / 2) = 63
    last = OctConv1d(24, 5, 3, padding=1, alpha=(0.5, 0.0))
    y = last(mid((high, low)))
    assert isinstance(y, Tensor) and tuple(y.shape) == (2, 5, 125)


def test_octconv3d_keeps_time_and_halves_odd_h_w():
    first = OctConv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), alpha=(0.0, 0.5))
    high, low = first(torch.randn(1, 3, 5, 15, 13))
    assert shapes((high, low)) == [(1, 4, 5, 8, 7), (1, 4, 5, 4, 4)]
    spatial = OctConv3d(8, 8, (1, 3, 3), padding=(0, 1, 1), alpha=0.5)  # R(2+1)D / S3D factorised pair
    temporal = OctConv3d(8, 8, (3, 1, 1), padding=(1, 0, 0), alpha=0.5)
    y = temporal(spatial((high, low)))
    assert shapes(y) == [(1, 4, 5, 8, 7), (1, 4, 5, 4, 4)]  # the temporal conv stays on each branch
    down = OctConv3d(8, 6, 3, stride=2, padding=1, alpha=0.5)
    assert shapes(down(y)) == [(1, 3, 3, 4, 4), (1, 3, 3, 2, 2)]


def test_octconv3d_octave_time_halves_time_too():
    conv = OctConv3d(3, 8, 3, padding=1, alpha=(0.0, 0.5), octave_time=True)
    assert conv.octave_time and "octave_time=True" in repr(conv)
    high, low = conv(torch.randn(1, 3, 5, 9, 9))
    assert shapes((high, low)) == [(1, 4, 5, 9, 9), (1, 4, 3, 5, 5)]
    nxt = OctConv3d(8, 8, 3, padding=1, alpha=0.5, octave_time=True)
    assert shapes(nxt((high, low))) == [(1, 4, 5, 9, 9), (1, 4, 3, 5, 5)]


def test_octconv3d_low_paths_are_pool_then_conv_and_conv_then_upsample():
    torch.manual_seed(0)
    conv = OctConv3d(4, 4, (1, 3, 3), padding=(0, 1, 1), alpha=0.5, bias=False)
    xh, xl = torch.randn(1, 2, 3, 8, 8), torch.randn(1, 2, 3, 4, 4)
    yh, yl = conv((xh, xl))
    pool = lambda t: F.avg_pool3d(t, (1, 2, 2))  # noqa: E731
    up = lambda t: F.interpolate(t, scale_factor=(1, 2, 2), mode="nearest")  # noqa: E731
    c = lambda t, w: F.conv3d(t, w, padding=(0, 1, 1))  # noqa: E731
    torch.testing.assert_close(yh, c(xh, conv.weight_hh) + up(c(xl, conv.weight_lh)))
    torch.testing.assert_close(yl, c(xl, conv.weight_ll) + c(pool(xh), conv.weight_hl))


# -- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 3])
def test_gradients_reach_every_path(nd):
    torch.manual_seed(0)
    cls = CONVS[nd][1]
    conv = cls(6, 6, 3, padding=1, alpha=0.5).double()
    size = (9,) if nd == 1 else (3, 5, 7)
    low = (5,) if nd == 1 else (3, 3, 4)
    xh = torch.randn(1, 3, *size, dtype=torch.double, requires_grad=True)
    xl = torch.randn(1, 3, *low, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: conv((a, b)), (xh, xl))
    sum(t.sum() for t in conv((xh, xl))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


# -- batch norm -------------------------------------------------------------------------------
@pytest.mark.parametrize("nd", [1, 3])
def test_octbatchnorm_is_exact_at_octave_1_and_splits_statistics(nd):
    bn = (nn.BatchNorm1d if nd == 1 else nn.BatchNorm3d)(8)
    randomize_bn(bn)
    part = Partition.split(8, 0.5)
    oct_bn = (OctBatchNorm1d if nd == 1 else OctBatchNorm3d).from_bn(bn, part).eval()
    bn.eval()
    x = torch.randn(2, 8, *((12,) if nd == 1 else (2, 4, 4)))
    assert rel_err(from_pair(oct_bn(to_pair(x, part)), part), bn(x)) <= 1e-6
    torch.testing.assert_close(oct_bn.bn_l.running_mean, bn.running_mean[4:])
    oct_bn.train()
    xh, xl = x[:, :4], x[:, 4:, ..., ::2]
    h, l = oct_bn((xh, xl))  # train mode: the statistics of each branch alone
    torch.testing.assert_close(h, F.batch_norm(xh, None, None, bn.weight[:4], bn.bias[:4], True))
    torch.testing.assert_close(l, F.batch_norm(xl, None, None, bn.weight[4:], bn.bias[4:], True))
    with pytest.raises(TypeError, match=f"from_bn expects an nn.BatchNorm{nd}d"):
        type(oct_bn).from_bn(nn.BatchNorm2d(8), part)


# -- errors -----------------------------------------------------------------------------------
def test_bad_arguments_raise_value_errors_that_say_what_was_expected():
    with pytest.raises(ValueError, match=r"OctConv3d: kernel_size must be an int or 3 ints, found \(3, 3\)"):
        OctConv3d(4, 4, (3, 3))
    with pytest.raises(ValueError, match="OctConv1d: stride must be an int or 1 ints"):
        OctConv1d(4, 4, 3, stride=(2, 2))
    with pytest.raises(ValueError, match="octave_time must be True or False, found 'yes'"):
        OctConv3d(4, 4, 3, octave_time="yes")
    with pytest.raises(ValueError, match="OctConv1d: in_channels"):
        OctConv1d(-1, 4, 3)
    with pytest.raises(TypeError, match=r"OctConv3d.from_conv expects an nn.Conv3d, found Conv2d"):
        OctConv3d.from_conv(nn.Conv2d(4, 4, 3))
    conv = OctConv3d(8, 8, 3, padding=1, alpha=0.5)
    with pytest.raises(ValueError, match=r"OctConv3d: expected 5-D \(N, C, T, H, W\) input, found 4 dims"):
        conv((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"must be \[3, 4, 4\] .*found \[2, 4, 4\]"):
        conv((torch.randn(1, 4, 3, 8, 8), torch.randn(1, 4, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"OctConv1d: expected a low input with 2 channels, found 3"):
        OctConv1d(4, 4, 3, padding=1, alpha=0.5)((torch.randn(1, 2, 8), torch.randn(1, 3, 4)))
    with pytest.raises(ValueError, match=r"maps the low branch to 2, but the octave grid of its 6 output needs 3"):
        OctConv1d(4, 4, 3, alpha=0.5)((torch.randn(1, 2, 8), torch.randn(1, 2, 4)))


# -- helpers, split / merge, TorchScript -------------------------------------------------------
def test_resample_helpers_take_the_axes():
    x = torch.randn(2, 3, 5, 7, 9)
    torch.testing.assert_close(downsample(x, 2), F.avg_pool3d(x, (1, 2, 2), (1, 2, 2), 0, True))
    torch.testing.assert_close(downsample(x.transpose(3, 4), 2), F.avg_pool3d(x.transpose(3, 4), (1, 2, 2), (1, 2, 2), 0, True))
    torch.testing.assert_close(downsample(x, 2, 3), F.avg_pool3d(x, 2, 2, 0, True))
    s = torch.randn(2, 3, 11)
    torch.testing.assert_close(downsample(s, 2), F.avg_pool1d(s, 2, 2, 0, True))
    check_low(x, downsample(x, 2), 2, "here")
    with pytest.raises(ValueError, match=r"here: .*must be \[5, 4, 5\]"):
        check_low(x, downsample(x, 2, 3), 2, "here")


@pytest.mark.parametrize("x", [torch.randn(2, 6, 11), torch.randn(1, 6, 3, 7, 9)])
def test_split_and_merge_of_1d_and_3d_maps(x):
    part = Partition.split(6, 0.5)
    high, low = OctaveSplit(partition=part)(x)
    assert tuple(low.shape[2:]) == ((6,) if x.dim() == 3 else (3, 4, 5))
    y = OctaveMerge(partition=part)((high, low))
    assert y.shape == x.shape
    torch.testing.assert_close(OctaveMerge(partition=part, octave=1)(OctaveSplit(partition=part, octave=1)(x)), x)


@pytest.mark.parametrize("nd", [1, 3])
def test_torchscript(nd):
    conv = CONVS[nd][1](6, 6, 3, padding=1, alpha=0.5).eval()
    x = (torch.randn(1, 3, 10), torch.randn(1, 3, 5)) if nd == 1 else (torch.randn(1, 3, 2, 6, 6), torch.randn(1, 3, 2, 3, 3))
    scripted = torch.jit.script(conv)
    for got, want in zip(scripted(x), conv(x)):
        torch.testing.assert_close(got, want)
