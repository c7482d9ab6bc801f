"""Tests of the octave layers (octify.nn): shapes, channel splits, exactness against the plain
PyTorch layers at octave=1, odd sizes, gradients, parameter counts, TorchScript and torch.compile.

The exactness oracle: at ``octave=1`` the low grid is the high grid, pooling and upsampling are
the identity, and an OctConv2d built with ``from_conv`` is the same linear map as the original
``nn.Conv2d``, whatever the partition. Feed ``high = x[:, part.high]``, ``low = x[:, part.low]``
and put the outputs back with the output partition.
"""

import copy
import math
import warnings
from typing import List, Tuple, Union

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from octify.nn import OctaveDual, OctaveMerge, OctaveSplit, OctBatchNorm2d, OctConv1d, OctConv2d, OctConv3d, Partition
from octify.nn.partition import low_channels

from conftest import OpCounter, randomize_bn, rel_err

HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def to_pair(x: Tensor, part: Partition, octave: int = 1) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """What an octave layer takes for the plain tensor ``x`` split by ``part``."""
    high = x[:, list(part.high)]
    low = x[:, list(part.low)]
    if octave > 1 and part.low:
        low = F.avg_pool2d(low, octave, octave, 0, True, True)
    if not part.low:
        return high
    if not part.high:
        return low
    return high, low


def from_pair(y: Union[Tensor, Tuple[Tensor, Tensor]], part: Partition) -> Tensor:
    """Reassemble a plain tensor from an octave layer's output (octave=1: both on one grid)."""
    if isinstance(y, Tensor):
        high, low = (y, None) if not part.low else (None, y)
        assert (high is None) == (not part.high), "a single Tensor came back for a two-branch partition"
    else:
        high, low = y
    ref = high if high is not None else low
    assert ref is not None
    out = ref.new_empty(ref.shape[0], part.channels, ref.shape[2], ref.shape[3])
    if high is not None:
        assert high.shape[1] == len(part.high)
        out[:, list(part.high)] = high
    if low is not None:
        assert low.shape[1] == len(part.low)
        assert low.shape[2:] == ref.shape[2:]
        out[:, list(part.low)] = low
    return out


def shapes(y) -> List[Tuple[int, ...]]:
    return [tuple(t.shape) for t in (y if isinstance(y, tuple) else (y,))]


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------
ALPHAS = [0.0, 0.125, 0.25, 0.3, 0.5, 0.75, 0.8, 1.0]


@st.composite
def grouped_partition(draw, channels: int, groups: int) -> Partition:
    """A random partition with the same number of low channels in every group."""
    per = channels // groups
    n_low = draw(st.integers(0, per))
    low: List[int] = []
    for g in range(groups):
        pos = draw(st.lists(st.integers(0, per - 1), min_size=n_low, max_size=n_low, unique=True))
        low.extend(g * per + p for p in pos)
    low.sort()
    high = tuple(i for i in range(channels) if i not in set(low))
    return Partition(high, tuple(low))


@st.composite
def any_partition(draw, channels: int) -> Partition:
    flags = draw(st.lists(st.booleans(), min_size=channels, max_size=channels))
    return Partition(tuple(i for i, f in enumerate(flags) if not f), tuple(i for i, f in enumerate(flags) if f))


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "groups2", "groups4", "depthwise"]))
    if kind == "dense":
        groups, cin, cout = 1, draw(st.integers(1, 12)), draw(st.integers(1, 12))
    elif kind == "depthwise":
        groups = cin = cout = draw(st.integers(2, 12))
    else:
        groups = 2 if kind == "groups2" else 4
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    kernel = (kh, kh if kw is None else kw)
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    same = tuple(dilation * (k - 1) // 2 for k in kernel)
    padding = draw(st.one_of(st.just(same), st.tuples(st.integers(0, 3), st.integers(0, 3))))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "zeros", "reflect", "replicate", "circular"]))
    bias = draw(st.booleans())
    eff = [dilation * (k - 1) + 1 for k in kernel]
    size = (draw(st.integers(max(eff[0], 4), 12)), draw(st.integers(max(eff[1], 4), 12)))
    split_groups = 1 if groups == cin == cout else groups  # depthwise (also groups=4 with 4 channels)
    if draw(st.booleans()):  # alphas
        alpha = (draw(st.sampled_from(ALPHAS)), draw(st.sampled_from(ALPHAS)))
        pin = Partition.split(cin, alpha[0], split_groups)
        pout = Partition.split(cout, alpha[1], split_groups)
        explicit = False
    else:  # random partitions
        alpha = (0.5, 0.5)
        if kind == "depthwise":
            pin, pout = draw(any_partition(cin)), draw(any_partition(cout))
        else:
            pin, pout = draw(grouped_partition(cin, groups)), draw(grouped_partition(cout, groups))
        explicit = True
    return dict(
        cin=cin, cout=cout, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
        padding_mode=padding_mode, bias=bias, groups=groups, size=size, alpha=alpha, pin=pin, pout=pout,
        explicit=explicit, batch=draw(st.integers(1, 2)), seed=draw(st.integers(0, 2**31 - 1)),
    )


# ---------------------------------------------------------------------------------------------
# shapes and errors
# ---------------------------------------------------------------------------------------------
def test_first_layer_shapes():
    conv = OctConv2d(3, 10, 3, padding=1, alpha=(0, 0.5))
    high, low = conv(torch.randn(2, 3, 200, 200))
    assert tuple(high.shape) == (2, 5, 200, 200)
    assert tuple(low.shape) == (2, 5, 100, 100)


def test_first_layer_stride2_shapes():
    conv = OctConv2d(3, 10, 3, padding=1, stride=2, alpha=(0, 0.5))
    high, low = conv(torch.randn(2, 3, 200, 200))
    assert tuple(high.shape) == (2, 5, 100, 100)
    assert tuple(low.shape) == (2, 5, 50, 50)


def test_cascade_returns_one_plain_tensor():
    net = nn.Sequential(
        OctConv2d(3, 10, 3, padding=1, alpha=(0, 0.5)),
        OctConv2d(10, 20, 7, padding=3, alpha=(0.5, 0.8)),
        OctConv2d(20, 1, 3, padding=1, alpha=(0.8, 0)),
    )
    mid = net[1](net[0](torch.randn(2, 3, 200, 200)))
    assert shapes(mid) == [(2, 4, 200, 200), (2, 16, 100, 100)]
    y = net(torch.randn(2, 3, 200, 200))
    assert isinstance(y, Tensor)
    assert tuple(y.shape) == (2, 1, 200, 200)


def test_alpha_zero_is_a_plain_conv():
    conv = OctConv2d(4, 6, 3, padding=1, alpha=0)
    assert (conv.ih, conv.il, conv.oh, conv.ol) == (4, 0, 6, 0)
    y = conv(torch.randn(1, 4, 9, 9))
    assert isinstance(y, Tensor) and tuple(y.shape) == (1, 6, 9, 9)
    ref = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 9)
    assert rel_err(OctConv2d.from_conv(ref, alpha=0)(x), ref(x)) <= 1e-6


def test_octave_4_shapes():
    conv = OctConv2d(8, 8, 3, padding=1, alpha=0.5, octave=4)
    high, low = conv((torch.randn(1, 4, 32, 32), torch.randn(1, 4, 8, 8)))
    assert shapes((high, low)) == [(1, 4, 32, 32), (1, 4, 8, 8)]
    # odd size: the low grid is ceil(18 / 4) = 5
    high, low = conv((torch.randn(1, 4, 18, 18), torch.randn(1, 4, 5, 5)))
    assert shapes((high, low)) == [(1, 4, 18, 18), (1, 4, 5, 5)]


def test_alpha_out_one_returns_low_only():
    conv = OctConv2d(8, 6, 3, padding=1, alpha=(0.5, 1.0))
    y = conv((torch.randn(2, 4, 16, 16), torch.randn(2, 4, 8, 8)))
    assert isinstance(y, Tensor) and tuple(y.shape) == (2, 6, 8, 8)
    # and the low-only tensor is a valid input of an alpha_in=1 layer, back to a pair
    back = OctConv2d(6, 8, 3, padding=1, alpha=(1.0, 0.5))
    high, low = back(y)
    assert shapes((high, low)) == [(2, 4, 16, 16), (2, 4, 8, 8)]


def test_stride_mode_pool_shapes():
    conv = OctConv2d(8, 12, 3, padding=1, stride=2, alpha=0.5, stride_mode="pool")
    high, low = conv((torch.randn(2, 4, 32, 32), torch.randn(2, 4, 16, 16)))
    assert shapes((high, low)) == [(2, 6, 16, 16), (2, 6, 8, 8)]
    first = OctConv2d(3, 12, 3, padding=1, stride=2, alpha=(0, 0.5), stride_mode="pool")
    assert shapes(first(torch.randn(2, 3, 32, 32))) == [(2, 6, 16, 16), (2, 6, 8, 8)]
    last = OctConv2d(8, 12, 3, padding=1, stride=2, alpha=(0.5, 0), stride_mode="pool")
    assert shapes(last((torch.randn(2, 4, 32, 32), torch.randn(2, 4, 16, 16)))) == [(2, 12, 16, 16)]


def test_stride_mode_pool_is_pool_then_conv():
    """The paper's strided octave conv: average-pool by the stride, then the stride-1 paths."""
    torch.manual_seed(0)
    conv = OctConv2d(8, 8, 3, padding=1, stride=2, alpha=0.5, stride_mode="pool")
    plain = OctConv2d(8, 8, 3, padding=1, stride=1, alpha=0.5)
    plain.load_state_dict(conv.state_dict())
    xh, xl = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 8, 8)
    yh, yl = conv((xh, xl))
    hh = F.conv2d(F.avg_pool2d(xh, 2), conv.weight_hh, conv.bias_h, padding=1)
    lh = F.conv2d(xl, conv.weight_lh, None, padding=1)  # already on the pooled high grid
    ll = F.conv2d(F.avg_pool2d(xl, 2), conv.weight_ll, conv.bias_l, padding=1)
    hl = F.conv2d(F.avg_pool2d(xh, 4), conv.weight_hl, None, padding=1)
    assert rel_err(yh, hh + lh) <= 1e-5
    assert rel_err(yl, ll + hl) <= 1e-5


def test_wrong_channel_count_names_expected_and_found():
    conv = OctConv2d(8, 8, 3, padding=1, alpha=0.5)
    with pytest.raises(ValueError, match=r"high input with 4 channels, found 5"):
        conv((torch.randn(1, 5, 8, 8), torch.randn(1, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"low input with 4 channels, found 3"):
        conv((torch.randn(1, 4, 8, 8), torch.randn(1, 3, 4, 4)))
    first = OctConv2d(3, 8, 3, padding=1, alpha=(0, 0.5))
    with pytest.raises(ValueError, match=r"3 channels, found 4"):
        first(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"pair"):
        conv(torch.randn(1, 8, 8, 8))


def test_wrong_low_size_raises():
    conv = OctConv2d(8, 8, 3, padding=1, alpha=0.5)
    with pytest.raises(ValueError, match=r"must be 4x4 .*found 8x8"):
        conv((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"must be 4x5 .*found 4x4"):
        conv((torch.randn(1, 4, 7, 9), torch.randn(1, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"must be"):
        OctaveMerge(8, 0.5)((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 3, 3)))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, (0.5, 1.01), (-1, 0.5), float("nan")])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match=r"must be a number in \[0, 1\]"):
        OctConv2d(8, 8, 3, alpha=alpha)


def test_alpha_bad_type_and_arity():
    with pytest.raises(ValueError, match="pair"):
        OctConv2d(8, 8, 3, alpha=(0.1, 0.2, 0.3))
    with pytest.raises(TypeError, match="alpha"):
        OctConv2d(8, 8, 3, alpha="0.5")


@pytest.mark.parametrize("octave", [2.0, 1.5, "2", True])
def test_non_integer_octave_is_type_error(octave):
    with pytest.raises(TypeError, match="octave must be an integer"):
        OctConv2d(8, 8, 3, alpha=0.5, octave=octave)
    with pytest.raises(TypeError, match="octave must be an integer"):
        OctaveSplit(8, 0.5, octave=octave)


def test_other_constructor_errors():
    with pytest.raises(ValueError, match="octave must be an integer >= 1, found 0"):
        OctConv2d(8, 8, 3, octave=0)
    with pytest.raises(ValueError, match="stride_mode"):
        OctConv2d(8, 8, 3, stride_mode="strided")
    with pytest.raises(ValueError, match="divisible by groups"):
        OctConv2d(8, 6, 3, groups=4)
    with pytest.raises(ValueError, match="same number of low channels in every group"):
        OctConv2d(8, 8, 3, groups=2, in_partition=Partition((0, 1, 2, 4, 5), (3, 6, 7)))
    with pytest.raises(ValueError, match="cover channels 0..7 exactly once"):
        OctConv2d(8, 8, 3, in_partition=((0, 1, 2), (3, 4, 5, 6)))
    with pytest.raises(TypeError, match="from_conv expects an nn.Conv2d"):
        OctConv2d.from_conv(nn.Linear(3, 3))


def test_low_grid_mismatch_is_reported():
    # valid padding shrinks 8x8 -> 6x6 (low grid 3x3) but the low branch 4x4 -> 2x2
    conv = OctConv2d(8, 8, 3, padding=0, alpha=0.5)
    with pytest.raises(ValueError, match=r"maps the low branch to 2x2.*needs 3x3"):
        conv((torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)))


# ---------------------------------------------------------------------------------------------
# channel split
# ---------------------------------------------------------------------------------------------
def test_split_rounding_avoids_float_trap():
    assert int((1 - 0.8) * 20) == 3  # the trap
    part = Partition.split(20, 0.8)
    assert len(part.low) == 16 and len(part.high) == 4
    assert part.high == (0, 1, 2, 3) and part.low == tuple(range(4, 20))
    conv = OctConv2d(20, 20, 3, alpha=0.8)
    assert (conv.ih, conv.il, conv.oh, conv.ol) == (4, 16, 4, 16)
    assert tuple(conv.weight_hh.shape) == (4, 4, 3, 3)
    assert tuple(conv.weight_ll.shape) == (16, 16, 3, 3)
    assert low_channels(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996
    assert low_channels(10, 0.33) == 3
    assert low_channels(7, 0.5) == 3


@pytest.mark.parametrize("channels,alpha,groups", [(8, 0.5, 2), (12, 0.25, 3), (16, 0.8, 4), (10, 0.3, 2), (6, 1.0, 3)])
def test_grouped_split_rule_on_indices(channels, alpha, groups):
    part = Partition.split(channels, alpha, groups)
    per = channels // groups
    n = math.floor(alpha * per + 1e-9)
    expect_low = tuple(g * per + j for g in range(groups) for j in range(per - n, per))
    assert part.low == expect_low
    assert part.high == tuple(i for i in range(channels) if i not in expect_low)
    assert part.low_per_group(groups) == n


def test_grouped_split_examples():
    assert Partition.split(8, 0.5, groups=2) == Partition((0, 1, 4, 5), (2, 3, 6, 7))
    assert Partition.split(12, 0.25, groups=3) == Partition((0, 1, 2, 4, 5, 6, 8, 9, 10), (3, 7, 11))
    conv = OctConv2d(8, 12, 3, groups=2, alpha=0.5)
    assert conv.in_partition == Partition((0, 1, 4, 5), (2, 3, 6, 7))
    assert conv.out_partition == Partition((0, 1, 2, 6, 7, 8), (3, 4, 5, 9, 10, 11))
    assert tuple(conv.weight_hh.shape) == (6, 2, 3, 3)


def test_depthwise_split_ignores_groups():
    conv = OctConv2d(8, 8, 3, groups=8, alpha=0.25)
    assert conv.depthwise
    assert conv.in_partition == Partition.split(8, 0.25) == Partition(tuple(range(6)), (6, 7))
    assert conv.weight_hh is None and conv.weight_lh is None
    assert tuple(conv.weight_h.shape) == (6, 1, 3, 3) and tuple(conv.weight_l.shape) == (2, 1, 3, 3)


@pytest.mark.parametrize("alpha", [(0, 0.5), (0.5, 0), (0.25, 0.5), (0.5, 0.25), (0.5, 0.5)])
def test_depthwise_layers_that_move_channels_narrow_and_keep_channels_last(alpha):
    # A depthwise layer whose branches change selects channels; with the usual partitions (high
    # channels first) every selection is a run of consecutive channels, narrowed rather than
    # gathered, and nothing needs a permutation back: a gather over the channels of a
    # channels-last map is slow and returns an NCHW map. The result is the plain conv's (octave=1).
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    pin, pout = Partition.split(8, alpha[0]), Partition.split(8, alpha[1])
    oct1 = OctConv2d.from_conv(conv, alpha=alpha, octave=1)
    runs = {"_hh": oct1._hh_at, "_hl": oct1._hl_at, "_lh": oct1._lh_at, "_ll": oct1._ll_at}
    assert all(runs[k] >= 0 for k in runs if getattr(oct1, k + "_sel").numel()), runs
    assert oct1._high_order.numel() == oct1._low_order.numel() == 0
    x = torch.randn(2, 8, 6, 6)
    pair = to_pair(x, pin)
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731
    y = oct1(tuple(cl(t) for t in pair) if isinstance(pair, tuple) else cl(pair))
    assert rel_err(from_pair(y, pout), conv(x)) <= 1e-6
    for t in (y if isinstance(y, tuple) else (y,)):
        assert t.stride(1) == 1 and t.stride(3) >= t.shape[1], t.stride()  # channels innermost (a narrowed channels-last map counts)


def test_a_depthwise_layer_pickled_in_the_earlier_channel_order_is_rebuilt_on_load():
    # Before channel runs were narrowed, the low conv of a depthwise layer held the low input's
    # channels first and the pooled high ones after; a layer pickled then is rebuilt in today's
    # order when it is unpickled (octify.load(..., trusted=True)), and computes what it did.
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    layer = OctConv2d.from_conv(conv, alpha=(0.25, 0.5), octave=1)
    pin = layer.in_partition
    assert layer._n_hl == 2 and layer.il == 2 and layer._low_res == [4, 5, 6, 7]
    state = dict(layer.__dict__, _parameters=dict(layer._parameters), _buffers=dict(layer._buffers))
    old = list(pin.low) + [4, 5]
    rows = [layer._low_res.index(c) for c in old]
    state["_low_res"] = old
    state["_parameters"]["weight_l"] = nn.Parameter(layer.weight_l[rows].detach().clone(), requires_grad=False)
    state["_parameters"]["bias_l"] = nn.Parameter(layer.bias_l[rows].detach().clone())
    for name in ("_hh_at", "_hl_at", "_lh_at", "_lh_in_at", "_ll_at"):
        del state[name]
    del state["_buffers"]["_lh_in_sel"]
    loaded = OctConv2d.__new__(OctConv2d)
    loaded.__setstate__(state)
    assert loaded._low_res == [4, 5, 6, 7] and loaded._hl_at == 4
    assert not loaded.weight_l.requires_grad and loaded.bias_l.requires_grad
    x = torch.randn(2, 8, 6, 6)
    assert rel_err(from_pair(loaded(to_pair(x, pin)), loaded.out_partition), conv(x)) <= 1e-6


def test_partition_coerce_and_properties():
    part = Partition.coerce(([3, 0, 1], [2]), 4)
    assert part == Partition((0, 1, 3), (2,))
    assert not part.is_contiguous and Partition.split(4, 0.5).is_contiguous
    assert part.alpha == 0.25
    assert part.concat(Partition((0,), (1,))) == Partition((0, 1, 3, 4), (2, 5))
    assert part.moved(Partition.split(4, 0.25)) == 2
    with pytest.raises(TypeError, match="pair"):
        Partition.coerce(5, 4)


# ---------------------------------------------------------------------------------------------
# exactness at octave=1
# ---------------------------------------------------------------------------------------------
@HYPO
@given(conv_cases())
def test_from_conv_matches_conv2d_at_octave_1(case):
    gen = torch.Generator().manual_seed(case["seed"])
    conv = nn.Conv2d(
        case["cin"], case["cout"], case["kernel"], case["stride"], case["padding"], case["dilation"],
        case["groups"], case["bias"], case["padding_mode"],
    ).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        if conv.bias is not None:
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    kw = dict(in_partition=case["pin"], out_partition=case["pout"]) if case["explicit"] else {}
    layer = OctConv2d.from_conv(conv, alpha=case["alpha"], octave=1, **kw)
    assert layer.in_partition == case["pin"] and layer.out_partition == case["pout"]
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in conv.parameters())
    x = torch.randn(case["batch"], case["cin"], *case["size"], generator=gen)
    with torch.no_grad():
        want = conv(x)
        got = from_pair(layer(to_pair(x, case["pin"])), case["pout"])
    assert rel_err(got, want) <= 1e-5
    # to_dense_weight inverts from_conv exactly
    w, b = layer.to_dense_weight()
    assert torch.equal(w, conv.weight)
    assert (b is None) == (conv.bias is None)
    if b is not None:
        assert torch.equal(b, conv.bias)
    # The inference forms octify.freeze picks compute the same function, and keep the weight.
    fused = layer.fuse_low_weights()
    assert (fused.weight_low is not None) == (
        not layer.depthwise and case["groups"] == 1 and not layer.pointwise and min(layer.ih, layer.il, layer.ol) > 0
    )
    merged = copy.deepcopy(layer).merge_lh()  # L->H in the low output's conv: int8's form
    assert merged.merges_lh == (not layer.depthwise and case["groups"] == 1 and min(layer.ih, layer.il, layer.oh, layer.ol) > 0)
    if layer.pointwise:
        layer.use_matmul()
    with torch.no_grad():
        got = from_pair(layer(to_pair(x.contiguous(memory_format=torch.channels_last), case["pin"])), case["pout"])
        got_merged = from_pair(merged(to_pair(x, case["pin"])), case["pout"])
    assert rel_err(got, want) <= 1e-5
    assert rel_err(got_merged, want) <= 1e-5
    assert torch.equal(layer.to_dense_weight()[0], conv.weight)
    w, b = merged.to_dense_weight()
    assert torch.equal(w, conv.weight) and (b is None or torch.equal(b, conv.bias))


@pytest.mark.parametrize("alpha", [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.25, 0.75)])
def test_from_conv_matches_with_grad(alpha):
    """The training path (no in-place add) is exact too, gradients included."""
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    layer = OctConv2d.from_conv(conv, alpha=alpha, octave=1)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    y_ref = conv(x)
    g = torch.randn_like(y_ref)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    y = from_pair(layer(to_pair(x, layer.in_partition)), layer.out_partition)
    (gx,) = torch.autograd.grad(y, x, g)
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(gx, gx_ref) <= 1e-5


def test_from_conv_string_padding():
    torch.manual_seed(2)
    for conv in (nn.Conv2d(6, 6, 5, padding="same", dilation=2), nn.Conv2d(6, 6, 3, padding="valid")):
        layer = OctConv2d.from_conv(conv, alpha=0.5, octave=1)
        x = torch.randn(1, 6, 11, 11)
        assert rel_err(from_pair(layer(to_pair(x, layer.in_partition)), layer.out_partition), conv(x)) <= 1e-5
    with pytest.raises(ValueError, match="even kernel"):
        OctConv2d.from_conv(nn.Conv2d(4, 4, 2, padding="same"), alpha=0.5)


@st.composite
def bn_cases(draw):
    c = draw(st.integers(1, 10))
    part = draw(any_partition(c))
    return dict(c=c, part=part, affine=draw(st.booleans()), train=draw(st.booleans()),
                momentum=draw(st.sampled_from([0.1, 0.5, None])), seed=draw(st.integers(0, 2**31 - 1)))


@settings(max_examples=40, deadline=None)
@given(bn_cases())
def test_from_bn_matches_batchnorm(case):
    gen = torch.Generator().manual_seed(case["seed"])
    bn = nn.BatchNorm2d(case["c"], affine=case["affine"], momentum=case["momentum"])
    randomize_bn(bn, gen, batches_tracked=7)
    bn.train(case["train"])
    part = case["part"]
    obn = OctBatchNorm2d.from_bn(bn, part)
    assert obn.training == case["train"]
    x = torch.randn(3, case["c"], 5, 5, generator=gen) * 2 + 1
    for _ in range(2):  # twice: the second pass uses updated running stats
        want = bn(x)
        got = from_pair(obn(to_pair(x, part)), part)
        assert rel_err(got, want) <= 1e-5
    for name in ("running_mean", "running_var"):
        merged = torch.empty(case["c"])
        for sub, idx in ((obn.bn_h, part.high), (obn.bn_l, part.low)):
            if sub is not None:
                merged[list(idx)] = getattr(sub, name)
        assert rel_err(merged, getattr(bn, name)) <= 1e-5
    for sub in (obn.bn_h, obn.bn_l):
        if sub is not None:
            assert int(sub.num_batches_tracked) == int(bn.num_batches_tracked) == (9 if case["train"] else 7)


def test_octbatchnorm_errors_and_default_split():
    bn = OctBatchNorm2d(20, alpha=0.8)
    assert bn.bn_h.num_features == 4 and bn.bn_l.num_features == 16
    with pytest.raises(ValueError, match=r"pair \(4 \+ 16 channels\)"):
        bn(torch.randn(1, 20, 4, 4))
    single = OctBatchNorm2d(6, alpha=0)
    assert single.bn_l is None
    assert tuple(single(torch.randn(2, 6, 3, 3)).shape) == (2, 6, 3, 3)
    with pytest.raises(ValueError, match="single branch"):
        single((torch.randn(2, 6, 3, 3), torch.randn(2, 0, 2, 2)))
    with pytest.raises(TypeError, match="from_bn expects an nn.BatchNorm2d"):
        OctBatchNorm2d.from_bn(nn.BatchNorm1d(4), Partition.split(4, 0.5))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 10).flatmap(lambda c: any_partition(c)), st.integers(1, 9), st.integers(1, 9))
def test_split_merge_round_trip_octave_1(part, h, w):
    x = torch.randn(2, part.channels, h, w)
    split = OctaveSplit(partition=part, octave=1)
    y = split(x)
    assert shapes(y) == shapes(to_pair(x, part))
    if isinstance(y, tuple):
        assert torch.equal(y[0], x[:, list(part.high)]) and torch.equal(y[1], x[:, list(part.low)])
        assert torch.equal(OctaveMerge(partition=part, octave=1)(y), x)
    else:
        assert torch.equal(y, x[:, list(part.high or part.low)])


@pytest.mark.parametrize("size", [(8, 8), (7, 7), (201, 201), (6, 9)])
@pytest.mark.parametrize("part", [Partition.split(8, 0.5), Partition((0, 2, 5), (1, 3, 4, 6, 7))])
def test_split_merge_octave_2(size, part):
    x = torch.randn(2, 8, *size)
    high, low = OctaveSplit(partition=part, octave=2)(x)
    assert tuple(low.shape[2:]) == tuple((s + 1) // 2 for s in size)
    y = OctaveMerge(partition=part, octave=2)((high, low))
    assert tuple(y.shape) == tuple(x.shape)
    assert torch.equal(y[:, list(part.high)], x[:, list(part.high)])  # high untouched
    # the low channels are the block means, repeated over each (ceil-mode) block
    want = F.interpolate(F.avg_pool2d(x[:, list(part.low)], 2, 2, 0, True), size=size, mode="nearest")
    assert rel_err(y[:, list(part.low)], want) <= 1e-6
    if size == (8, 8):
        block = x[0, part.low[0], :2, :2].mean()
        assert torch.allclose(y[0, part.low[0], :2, :2], block.expand(2, 2))
        assert not torch.allclose(y[:, list(part.low)], x[:, list(part.low)])


def test_split_merge_errors():
    with pytest.raises(ValueError, match=r"expected an \(N, 8, H, W\) tensor, found shape \[1, 6, 4, 4\]"):
        OctaveSplit(8, 0.5)(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match="expected 4 high \\+ 4 low channels, found 3 \\+ 4"):
        OctaveMerge(8, 0.5)((torch.randn(1, 3, 4, 4), torch.randn(1, 4, 2, 2)))
    with pytest.raises(TypeError, match="channels"):
        OctaveSplit()


def test_octave_dual():
    relu = OctaveDual(nn.ReLU())
    h, l = relu((torch.tensor([[[[-1.0, 2.0]]]]), torch.tensor([[[[3.0, -4.0]]]])))
    assert h.tolist() == [[[[0.0, 2.0]]]] and l.tolist() == [[[[3.0, 0.0]]]]
    assert relu(torch.tensor([-1.0, 1.0])).tolist() == [0.0, 1.0]
    with pytest.raises(TypeError, match="expects an nn.Module"):
        OctaveDual(torch.relu)


# ---------------------------------------------------------------------------------------------
# octave=2 semantics
# ---------------------------------------------------------------------------------------------
def test_four_paths_by_hand_octave_2():
    torch.manual_seed(3)
    conv = OctConv2d(6, 8, 3, padding=1, alpha=0.5)
    xh, xl = torch.randn(2, 3, 10, 10), torch.randn(2, 3, 5, 5)
    yh, yl = conv.eval()((xh, xl))
    want_h = F.conv2d(xh, conv.weight_hh, conv.bias_h, padding=1) + F.interpolate(
        F.conv2d(xl, conv.weight_lh, None, padding=1), scale_factor=2, mode="nearest"
    )
    want_l = F.conv2d(xl, conv.weight_ll, conv.bias_l, padding=1) + F.conv2d(
        F.avg_pool2d(xh, 2), conv.weight_hl, None, padding=1
    )
    assert rel_err(yh, want_h) <= 1e-5 and rel_err(yl, want_l) <= 1e-5


def masked_reference(conv: nn.Conv2d, pin: Partition, pout: Partition, xh: Tensor, xl: Tensor, octave: int,
                     stride_mode: str = "conv") -> Tuple[Tensor, Tensor]:
    """An independent octave conv: the dense conv's weight, masked to each path, on zero-filled
    full-channel tensors (grouped and depthwise convs need no special case: masked entries are 0)."""
    n, c = xh.shape[0], conv.in_channels
    XH = xh.new_zeros(n, c, *xh.shape[2:])
    XH[:, list(pin.high)] = xh
    XL = xl.new_zeros(n, c, *xl.shape[2:])
    XL[:, list(pin.low)] = xl
    w = conv.weight
    cin_g, cout_g = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    in_low = torch.zeros(w.shape[1], dtype=torch.bool).repeat(conv.groups, 1)  # per output group
    for i in pin.low:
        in_low[i // cin_g, i % cin_g] = True
    in_low = in_low.repeat_interleave(cout_g, 0).view(w.shape[0], w.shape[1], 1, 1)
    out_low = torch.zeros(w.shape[0], dtype=torch.bool)
    out_low[list(pout.low)] = True
    out_low = out_low.view(-1, 1, 1, 1)
    W = {
        "hh": w * (~in_low & ~out_low), "lh": w * (in_low & ~out_low),
        "hl": w * (~in_low & out_low), "ll": w * (in_low & out_low),
    }
    stride = conv.stride
    pool = lambda t, f: t if f == 1 else F.avg_pool2d(t, f, f, 0, True, True)  # noqa: E731
    XL_lh = XL_ll = None
    if stride_mode == "pool" and stride != (1, 1):
        s = stride[0]
        XH, XL_lh, XL_ll = pool(XH, s), pool(XL, max(1, s // octave)), pool(XL, s)
        stride = (1, 1)
    else:
        XL_lh = XL_ll = XL
    cv = lambda t, wt, b=None: F.conv2d(t, wt, b, stride, conv.padding, conv.dilation, conv.groups)  # noqa: E731
    yh = cv(XH, W["hh"], conv.bias)
    lh = cv(XL_lh, W["lh"])
    yh = yh + F.interpolate(lh, size=yh.shape[2:], mode="nearest")
    yl = cv(XL_ll, W["ll"], conv.bias) + cv(pool(XH, octave), W["hl"])
    return yh[:, list(pout.high)], yl[:, list(pout.low)]


@st.composite
def octave_cases(draw):
    kind = draw(st.sampled_from(["dense", "groups2", "depthwise"]))
    if kind == "dense":
        groups, cin, cout = 1, draw(st.integers(2, 10)), draw(st.integers(2, 10))
    elif kind == "depthwise":
        groups = cin = cout = draw(st.integers(2, 10))
    else:
        groups, cin, cout = 2, 2 * draw(st.integers(1, 4)), 2 * draw(st.integers(1, 4))
    k = draw(st.sampled_from([1, 3, 5]))
    dilation = draw(st.integers(1, 2))
    octave = draw(st.sampled_from([2, 2, 3, 4]))
    stride_mode = draw(st.sampled_from(["conv", "pool"]))
    stride = draw(st.sampled_from([1, 2] if stride_mode == "conv" else [1, octave, 2 * octave]))
    if kind == "depthwise":
        pin, pout = draw(any_partition(cin)), draw(any_partition(cout))
    else:
        pin, pout = draw(grouped_partition(cin, groups)), draw(grouped_partition(cout, groups))
    # keep both branches present on the input (the pair form); outputs may be single
    assume_ok = bool(pin.high) and bool(pin.low)
    size = (draw(st.integers(4, 17)), draw(st.integers(4, 17)))
    return dict(cin=cin, cout=cout, groups=groups, k=k, dilation=dilation, octave=octave, stride=stride,
                stride_mode=stride_mode, pin=pin, pout=pout, ok=assume_ok, size=size,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@HYPO
@given(octave_cases())
def test_matches_masked_reference_at_octave_2_3_4(case):
    """Odd sizes, octaves 2-4, strides, both stride modes, random partitions, grouped and depthwise."""
    from hypothesis import assume

    assume(case["ok"])
    gen = torch.Generator().manual_seed(case["seed"])
    pad = case["dilation"] * (case["k"] - 1) // 2
    conv = nn.Conv2d(case["cin"], case["cout"], case["k"], case["stride"], pad, case["dilation"], case["groups"], case["bias"])
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        if conv.bias is not None:
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    pin, pout, octave = case["pin"], case["pout"], case["octave"]
    layer = OctConv2d.from_conv(conv, octave=octave, stride_mode=case["stride_mode"], in_partition=pin, out_partition=pout)
    x = torch.randn(2, case["cin"], *case["size"], generator=gen)
    xh, xl = to_pair(x, pin, octave)
    want_h, want_l = masked_reference(conv, pin, pout, xh, xl, octave, case["stride_mode"])
    grid = tuple((s + octave - 1) // octave for s in want_h.shape[2:])
    if pout.low and tuple(want_l.shape[2:]) != grid:
        with pytest.raises(ValueError, match="octave grid"):
            layer((xh, xl))
        return
    for grad in (False, True):  # in-place (no grad) and out-of-place paths
        with torch.set_grad_enabled(grad):
            y = layer((xh, xl))
        outs = y if isinstance(y, tuple) else ((y, None) if not pout.low else (None, y))
        if pout.high:
            assert rel_err(outs[0], want_h) <= 1e-5
        if pout.low:
            assert rel_err(outs[1], want_l) <= 1e-5


def test_inplace_upsample_add_keeps_gradients():
    """With the H->H path frozen and a plain input, the in-place add of the upsampled L->H output
    must still carry the L->H gradients."""
    torch.manual_seed(10)
    conv = OctConv2d(8, 8, 3, padding=1, alpha=0.5)
    ref = OctConv2d(8, 8, 3, padding=1, alpha=0.5)
    ref.load_state_dict(conv.state_dict())
    conv.weight_hh.requires_grad_(False)
    conv.bias_h.requires_grad_(False)
    xh, xl = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)
    yh, _ = conv((xh, xl))
    yh_ref, _ = ref((xh, xl))
    assert rel_err(yh, yh_ref) <= 1e-6
    g = torch.randn_like(yh)
    (yh * g).sum().backward()
    (yh_ref * g).sum().backward()
    assert rel_err(conv.weight_lh.grad, ref.weight_lh.grad) <= 1e-5
    assert conv.weight_hh.grad is None


@pytest.mark.parametrize("alpha", [(0.0, 0.5), (0.5, 0.5), (0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (1.0, 0.0), (0.0, 1.0)])
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_bias_counted_once_per_branch(alpha, groups):
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.arange(1.0, 9.0))
    layer = OctConv2d.from_conv(conv, alpha=alpha, octave=2)
    x = torch.randn(1, 8, 10, 10)
    y = layer(to_pair(x, layer.in_partition, octave=2))
    outs = y if isinstance(y, tuple) else ((y, None) if layer.ol == 0 else (None, y))
    for t, idx, hw in ((outs[0], layer.out_partition.high, 10), (outs[1], layer.out_partition.low, 5)):
        if idx:
            want = torch.tensor([float(i + 1) for i in idx]).view(1, -1, 1, 1).expand(1, len(idx), hw, hw)
            assert torch.equal(t, want)
        else:
            assert t is None


@pytest.mark.parametrize("size", [7, 201])
@pytest.mark.parametrize("stride,mode", [(1, "conv"), (2, "conv"), (2, "pool")])
@pytest.mark.parametrize("groups", [1, 8])
def test_odd_sizes_octave_2(size, stride, mode, groups):
    low = (size + 1) // 2
    first = OctConv2d(3, 8, 3, padding=1, alpha=(0, 0.5))
    conv = OctConv2d(8, 8, 3, padding=1, stride=stride, alpha=0.5, stride_mode=mode, groups=groups)
    last = OctConv2d(8, 4, 3, padding=1, alpha=(0.5, 0))
    merge = OctaveMerge(8, 0.5)
    x = torch.randn(1, 3, size, size)
    pair = first(x)
    assert shapes(pair) == [(1, 4, size, size), (1, 4, low, low)]
    out = conv(pair)
    hs = size if stride == 1 else (size + 1) // 2  # conv: floor((s + 2 - 3) / 2) + 1; pool: ceil(s / 2)
    assert shapes(out) == [(1, 4, hs, hs), (1, 4, (hs + 1) // 2, (hs + 1) // 2)]
    assert tuple(merge(out).shape) == (1, 8, hs, hs)
    assert tuple(last(out).shape) == (1, 4, hs, hs)
    assert torch.isfinite(last(out)).all()


def test_odd_size_without_padding_first_layer():
    # a 7x7 map through a valid conv: high 5x5, whose low grid 3x3 comes from the pooled 4x4 map
    conv = OctConv2d(3, 8, 3, padding=0, alpha=(0, 0.5))
    with pytest.raises(ValueError, match="needs 3x3"):
        conv(torch.randn(1, 3, 7, 7))  # pooled 4x4 -> valid conv 2x2 != 3x3


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_octave_2(mode):
    torch.manual_seed(4)
    conv = OctConv2d(4, 4, 3, padding=1, alpha=0.5, padding_mode=mode)
    xh, xl = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4)
    yh, yl = conv((xh, xl))
    want_l = F.conv2d(F.pad(xl, [1, 1, 1, 1], mode=mode), conv.weight_ll, conv.bias_l) + F.conv2d(
        F.pad(F.avg_pool2d(xh, 2), [1, 1, 1, 1], mode=mode), conv.weight_hl
    )
    assert rel_err(yl, want_l) <= 1e-5
    assert "padding_mode" in repr(conv)


# ---------------------------------------------------------------------------------------------
# parameters, gradients, dtype
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.125, 0.25, 0.5, 0.8, 1.0, (0.0, 0.5), (0.5, 0.0), (0.3, 0.7)])
@pytest.mark.parametrize("cin,cout,groups", [(16, 32, 1), (16, 32, 2), (16, 16, 4), (16, 16, 16)])
def test_parameter_count_equals_conv(alpha, cin, cout, groups):
    conv = nn.Conv2d(cin, cout, 3, groups=groups)
    layer = OctConv2d(cin, cout, 3, groups=groups, alpha=alpha)
    n_conv = sum(p.numel() for p in conv.parameters())
    assert sum(p.numel() for p in layer.parameters()) == n_conv
    layer_nb = OctConv2d(cin, cout, 3, groups=groups, alpha=alpha, bias=False)
    assert sum(p.numel() for p in layer_nb.parameters()) == n_conv - cout
    assert all(name.startswith("weight") for name, _ in layer_nb.named_parameters())


def test_parameter_names():
    dense = OctConv2d(8, 8, 3, alpha=0.5)
    assert sorted(n for n, _ in dense.named_parameters()) == [
        "bias_h", "bias_l", "weight_hh", "weight_hl", "weight_lh", "weight_ll",
    ]
    dw = OctConv2d(8, 8, 3, groups=8, alpha=0.5)
    assert sorted(n for n, _ in dw.named_parameters()) == ["bias_h", "bias_l", "weight_h", "weight_l"]
    first = OctConv2d(3, 8, 3, alpha=(0, 0.5))
    assert sorted(n for n, _ in first.named_parameters()) == ["bias_h", "bias_l", "weight_hh", "weight_hl"]
    assert set(dense.state_dict()) == {"bias_h", "bias_l", "weight_hh", "weight_hl", "weight_lh", "weight_ll"}


@pytest.mark.parametrize("groups,stride,mode", [(1, 1, "conv"), (2, 1, "conv"), (1, 2, "conv"), (1, 2, "pool"), (8, 1, "conv")])
def test_gradients_reach_every_parameter(groups, stride, mode):
    torch.manual_seed(5)
    conv = OctConv2d(8, 8, 3, padding=1, stride=stride, groups=groups, alpha=0.5, stride_mode=mode)
    xh = torch.randn(2, 4, 12, 12, requires_grad=True)
    xl = torch.randn(2, 4, 6, 6, requires_grad=True)
    yh, yl = conv((xh, xl))
    (yh.square().sum() + yl.square().sum()).backward()
    names = {n for n, _ in conv.named_parameters()}
    assert names == ({"weight_h", "weight_l", "bias_h", "bias_l"} if groups == 8 else
                     {"weight_hh", "weight_hl", "weight_lh", "weight_ll", "bias_h", "bias_l"})
    for name, p in conv.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert xh.grad.abs().sum() > 0 and xl.grad.abs().sum() > 0


def test_depthwise_cross_channels_get_gradients():
    # channels that change branch in a depthwise conv go through the low-resolution conv
    pin = Partition((0, 1, 2, 3), (4, 5, 6, 7))
    pout = Partition((0, 1, 4, 5), (2, 3, 6, 7))
    torch.manual_seed(6)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    layer = OctConv2d.from_conv(conv, octave=2, in_partition=pin, out_partition=pout)
    x = torch.randn(1, 8, 8, 8)
    yh, yl = layer(to_pair(x, pin, 2))
    # channel 4 (low -> high): the low conv of channel 4, upsampled
    want4 = F.interpolate(F.conv2d(F.avg_pool2d(x[:, 4:5], 2), conv.weight[4:5], conv.bias[4:5], padding=1),
                          scale_factor=2, mode="nearest")
    assert rel_err(yh[:, 2:3], want4) <= 1e-5
    # channel 2 (high -> low): pooled, then the conv
    want2 = F.conv2d(F.avg_pool2d(x[:, 2:3], 2), conv.weight[2:3], conv.bias[2:3], padding=1)
    assert rel_err(yl[:, 0:1], want2) <= 1e-5
    # channel 0 stays high at full resolution
    assert rel_err(yh[:, 0:1], F.conv2d(x[:, 0:1], conv.weight[0:1], conv.bias[0:1], padding=1)) <= 1e-5


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_to_dense_weight_inverts_from_conv(groups):
    torch.manual_seed(7)
    conv = nn.Conv2d(8, 16 if groups != 8 else 8, 3, groups=groups)
    for alpha in (0.0, 0.25, 0.5, (0.0, 0.75), (1.0, 0.5), 1.0):
        layer = OctConv2d.from_conv(conv, alpha=alpha)
        w, b = layer.to_dense_weight()
        assert torch.equal(w, conv.weight) and torch.equal(b, conv.bias)
    # and a fresh layer's dense weight gives back the same layer
    layer = OctConv2d(8, 8, 3, groups=groups, alpha=0.5, bias=False)
    w, b = layer.to_dense_weight()
    assert b is None
    ref = nn.Conv2d(8, 8, 3, groups=groups, bias=False)
    with torch.no_grad():
        ref.weight.copy_(w)
    again = OctConv2d.from_conv(ref, alpha=0.5)
    for (n1, p1), (n2, p2) in zip(layer.named_parameters(), again.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_dtype_and_device_arguments():
    conv = OctConv2d(8, 8, 3, padding=1, alpha=0.5, dtype=torch.float64, device="cpu")
    for name, p in conv.named_parameters():
        assert p.dtype == torch.float64, name
        assert p.device.type == "cpu", name
    yh, yl = conv((torch.randn(1, 4, 8, 8, dtype=torch.float64), torch.randn(1, 4, 4, 4, dtype=torch.float64)))
    assert yh.dtype == yl.dtype == torch.float64
    dw = OctConv2d(8, 8, 3, groups=8, alpha=0.5, dtype=torch.float64)
    assert {p.dtype for p in dw.parameters()} == {torch.float64}
    ref = nn.Conv2d(4, 4, 3, dtype=torch.float64)
    assert {p.dtype for p in OctConv2d.from_conv(ref, alpha=0.5).parameters()} == {torch.float64}
    bn = OctBatchNorm2d(8, alpha=0.5, dtype=torch.float64)
    assert {p.dtype for p in bn.parameters()} == {torch.float64}


def test_from_conv_copies_training_flag_and_reset():
    conv = nn.Conv2d(8, 8, 3).eval()
    assert not OctConv2d.from_conv(conv).training
    layer = OctConv2d(8, 8, 3, alpha=0.5)
    before = layer.weight_hh.clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight_hh)
    bound = 1 / math.sqrt(8 * 9)  # kaiming_uniform(a=sqrt(5)) of the dense conv
    for p in layer.parameters():
        assert p.abs().max() <= bound + 1e-6


def test_extra_repr():
    r = repr(OctConv2d(8, 16, 3, padding=1, stride=2, groups=2, alpha=(0.25, 0.5), bias=False, stride_mode="pool"))
    for piece in ("8, 16", "kernel_size=(3, 3)", "stride=(2, 2)", "alpha=(0.25, 0.5)", "groups=2", "bias=False", "'pool'"):
        assert piece in r, (piece, r)


def test_channels_last_layout_is_kept():
    torch.manual_seed(8)
    conv = OctConv2d.from_conv(nn.Conv2d(16, 16, 3, padding=1), alpha=0.5).eval()
    xh, xl = torch.randn(2, 8, 12, 12), torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        ref = conv((xh, xl))
        got = conv((xh.contiguous(memory_format=torch.channels_last), xl.contiguous(memory_format=torch.channels_last)))
    for a, b in zip(got, ref):
        assert a.is_contiguous(memory_format=torch.channels_last)
        assert rel_err(a, b) <= 1e-5


# ---------------------------------------------------------------------------------------------
# TorchScript and torch.compile
# ---------------------------------------------------------------------------------------------
class TinyOctNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = OctConv2d(3, 8, 3, padding=1, alpha=(0.0, 0.5))
        self.bn1 = OctBatchNorm2d(8, alpha=0.5)
        self.act = OctaveDual(nn.ReLU())
        self.conv2 = OctConv2d(8, 8, 3, padding=1, stride=2, alpha=0.5)
        self.conv3 = OctConv2d(8, 8, 3, padding=1, groups=8, alpha=0.5)
        self.conv4 = OctConv2d(8, 4, 3, padding=1, alpha=(0.5, 0.0))

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.conv3(self.conv2(y)))
        out = self.conv4(y)
        assert isinstance(out, Tensor)
        return out


def _tiny_net() -> TinyOctNet:
    torch.manual_seed(9)
    net = TinyOctNet()
    randomize_bn(net.bn1.bn_h, torch.Generator().manual_seed(1))
    randomize_bn(net.bn1.bn_l, torch.Generator().manual_seed(2))
    return net.eval()


def test_torchscript_matches_eager():
    net = _tiny_net()
    x = torch.randn(2, 3, 13, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(net)
    with torch.no_grad():
        want = net(x)
        got = scripted(x)
    assert tuple(got.shape) == (2, 4, 7, 7)
    assert torch.allclose(got, want, atol=1e-5)
    # a lone layer, all input/output kinds
    for layer, inp in (
        (OctConv2d(4, 4, 3, padding=1, alpha=(0.0, 0.5)), torch.randn(1, 4, 6, 6)),
        (OctConv2d(4, 4, 3, padding=1, alpha=(1.0, 0.5)), torch.randn(1, 4, 3, 3)),
        (OctConv2d(4, 4, 3, padding=1, alpha=(0.5, 1.0), groups=2), (torch.randn(1, 2, 6, 6), torch.randn(1, 2, 3, 3))),
        (OctConv2d(4, 4, 3, padding=1, stride=2, alpha=0.5, stride_mode="pool", padding_mode="reflect"),
         (torch.randn(1, 2, 6, 6), torch.randn(1, 2, 3, 3))),
        (OctConv2d.from_conv(nn.Conv2d(4, 4, 3, padding=1, groups=4), octave=2,
                             in_partition=Partition((0, 1), (2, 3)), out_partition=Partition((0, 2), (1, 3))),
         (torch.randn(1, 2, 6, 6), torch.randn(1, 2, 3, 3))),
    ):
        layer.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = torch.jit.script(layer)
        with torch.no_grad():
            a, b = layer(inp), s(inp)
        assert shapes(a) == shapes(b)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert torch.allclose(u, v, atol=1e-6)


def test_torch_compile_matches_eager():
    net = _tiny_net()
    x = torch.randn(2, 3, 13, 13)
    compiled = torch.compile(net)
    with torch.no_grad():
        want = net(x)
        got = compiled(x)
    assert tuple(got.shape) == (2, 4, 7, 7)
    assert torch.allclose(got, want, atol=1e-5)


def test_an_in_place_weight_update_is_seen_at_once_in_every_mode():
    # The layer keeps no cache: the same outputs with and without autograd, and an optimizer step
    # (an in-place update) changes the next eval-mode output.
    torch.manual_seed(0)
    layer = OctConv2d(16, 16, 3, padding=1, alpha=0.5).eval()
    pair = (torch.randn(2, 8, 12, 12), torch.randn(2, 8, 6, 6))
    with torch.no_grad():
        first = layer(pair)
    with_grad = layer(pair)  # autograd on: the live weights
    for a, b in zip(first, with_grad):
        assert torch.allclose(a, b, atol=1e-6)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    sum(t.sum() for t in layer(pair)).backward()
    opt.step()
    with torch.no_grad():
        after = layer(pair)
        layer.train()
        live = layer(pair)
    assert not torch.allclose(after[1], first[1], atol=1e-3)
    for a, b in zip(after, live):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("alpha", [(0.5, 0.5), (0.0, 0.5), (0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.25, 0.75)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("stride,mode", [(1, "conv"), (2, "pool")])
def test_pointwise_inference_runs_as_matrix_products_with_the_same_result(alpha, bias, stride, mode):
    torch.manual_seed(0)
    cl = torch.channels_last
    layer = OctConv2d(16, 24, 1, stride=stride, alpha=alpha, bias=bias, stride_mode=mode).to(memory_format=cl)
    high = torch.randn(2, layer.ih, 11, 11).contiguous(memory_format=cl)
    low = torch.randn(2, layer.il, 6, 6).contiguous(memory_format=cl)
    x = high if layer.il == 0 else low if layer.ih == 0 else (high, low)
    want = layer(x)  # the convolution paths
    assert layer.runs_as_matmul is False
    layer.use_matmul()
    with OpCounter() as ops:
        got = layer(x)
    assert "convolution" not in ops.counts and ops.counts.keys() & {"mm", "addmm"}
    # In place only the accumulation of one product onto another the layer just made (no view,
    # nothing the caller sees): exporters see plain products.
    assert {name for name in ops.counts if name.endswith("_")} <= {"addmm_"}
    if layer.weight_hh is not None:
        (got[0] if isinstance(got, tuple) else got).sum().backward()  # and autograd goes through them
        assert layer.weight_hh.grad is not None
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert [t.shape for t in got] == [t.shape for t in want]
    for g, w in zip(got, want):
        assert torch.allclose(g, w, atol=1e-5)
        assert g.is_contiguous(memory_format=cl)


def test_the_flop_counter_counts_the_in_place_product_of_a_frozen_1x1_layer():
    # A frozen 1x1 octave conv accumulates H->H onto the upsampled L->H with addmm_, which torch's
    # FlopCounterMode table leaves out; octify registers it as torch counts addmm.
    from torch.utils.flop_counter import FlopCounterMode

    out, a, b = torch.randn(4, 5), torch.randn(4, 3), torch.randn(3, 5)
    counter = FlopCounterMode(display=False)
    with counter:
        out.addmm_(a, b)
        torch.addmm(out, a, b)
    assert counter.get_total_flops() == 2 * (2 * 4 * 3 * 5)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channels_last_batch1", "video", "strided", "same_size", "low_precision"])
def test_the_upsample_add_into_a_fresh_high_map_writes_it_in_place_where_it_can(layout):
    """An octave conv adds L->H into its H->H conv's output (add_upsampled(into_high=True)): in place
    where high's memory is laid out as one block, the same numbers and layout as the out-of-place
    sum; out of place where the write could not reach high (a strided view) or would round the sum
    to a lower precision."""
    from octify.nn._resample import add_upsampled

    torch.manual_seed(0)
    cl = torch.channels_last
    shapes = {"video": ((2, 3, 4, 8, 6), (2, 3, 4, 4, 3)), "same_size": ((2, 3, 8, 6), (2, 3, 8, 6)),
              "channels_last_batch1": ((1, 5, 8, 6), (1, 5, 4, 3))}
    hs, ls = shapes.get(layout, ((2, 5, 8, 6), (2, 5, 4, 3)))
    high, low = torch.randn(hs), torch.randn(ls)
    if layout.startswith("channels_last"):
        high, low = high.contiguous(memory_format=cl), low.contiguous(memory_format=cl)
    if layout == "strided":
        high = torch.randn(2, 5, 6, 8).transpose(2, 3)  # a view whose reshape would copy
    if layout == "low_precision":
        low = low.to(torch.bfloat16)
    size = list(high.shape[2:])
    want = high + F.interpolate(low.float(), size=size, mode="nearest")
    before = high.clone()
    got = add_upsampled(high, low, 2, True)
    assert got.dtype == want.dtype and torch.allclose(got, want, atol=1e-6)
    assert got.stride() == want.stride() or layout == "strided"
    in_place = layout not in ("strided", "low_precision")
    assert (got.data_ptr() == high.data_ptr()) is in_place
    assert torch.equal(high, got if in_place else before)


@pytest.mark.parametrize(
    "cls,size,kw",
    [
        (OctConv2d, (12, 10), dict(stride=2, padding_mode="reflect")),
        (OctConv2d, (9, 9), dict(bias=False)),
        (OctConv1d, (16,), dict(stride=2)),
        (OctConv3d, (3, 8, 8), dict()),
    ],
)
def test_merge_lh_runs_two_convs_for_the_same_outputs(cls, size, kw):
    torch.manual_seed(0)
    layer = cls(8, 12, 3, padding=1, alpha=(0.5, 0.25), **kw).eval()
    merged = copy.deepcopy(layer).merge_lh()
    assert merged.merges_lh and not layer.merges_lh
    assert merged.weight_lh is None and merged.weight_hl is None and merged.weight_ll is None and merged.bias_l is None
    assert tuple(merged.weight_lowres.shape) == (9 + 3, 4 + 4) + (3,) * len(size)  # [L->H | low] x [pooled high | low]
    assert not merged.weight_lowres[:9, :4].any()  # no pooled high input reaches L->H
    low = [-(-s // 2) for s in size] if len(size) < 3 else [size[0]] + [-(-s // 2) for s in size[1:]]  # video: time kept
    xh, xl = torch.randn(2, 4, *size), torch.randn(2, 4, *low)
    counts, outs = [], []
    for m in (layer, merged):
        with torch.no_grad(), OpCounter() as c:
            outs.append(m((xh, xl)))
        counts.append(c.counts["convolution"])
    assert counts == [3, 2]
    for a, b in zip(*outs):
        assert a.shape == b.shape and rel_err(b, a) <= 1e-6


def test_merge_lh_leaves_the_layers_it_cannot_merge_as_they_are():
    cases = {
        "pooled stride": OctConv2d(8, 8, 3, stride=2, padding=1, stride_mode="pool"),  # L->H reads the low input pooled less
        "no high input": OctConv2d(8, 8, 3, padding=1, alpha=(0.0, 0.5)),
        "grouped": OctConv2d(8, 8, 3, padding=1, groups=2),
        "matrix products": OctConv2d(8, 8, 1).use_matmul(),
    }
    for why, layer in cases.items():
        keys = sorted(layer.state_dict())
        assert not layer.can_merge_lh and not layer.merge_lh().merges_lh, why
        assert sorted(layer.state_dict()) == keys, why
