"""Block-wise reconstruction from unlabeled data (issue 26): the least-squares fit of one octave
conv finds the exact weights when they exist, and ``octify.reconstruct`` brings a converted
network closer to its original on data it did not see, keeps the oracle, and never returns a
worse model than it was given."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import octify
from octify.tune.reconstruct import LayerFit

from conftest import randomize_bn, rel_err


@pytest.mark.parametrize("kernel, stride, bias, alpha", [
    (3, 1, True, (0.5, 0.5)), (3, 2, False, (0.5, 0.5)), (1, 1, True, (0.25, 0.75)), (3, 1, True, (0.0, 0.5)), (3, 1, False, (0.5, 0.0)),
])
def test_the_fit_of_one_layer_finds_the_exact_weights(kernel, stride, bias, alpha):
    torch.manual_seed(0)
    make = lambda: octify.OctConv2d(8, 12, kernel, stride=stride, padding=kernel // 2, bias=bias, alpha=alpha)  # noqa: E731
    truth, layer = make().eval(), make().eval()
    fit = LayerFit(layer, rows=10**6)
    with torch.no_grad():
        for _ in range(3):
            xh, xl = torch.randn(4, truth.ih, 16, 16), torch.randn(4, truth.il, 8, 8)
            x = (xh, xl) if truth.ih and truth.il else (xh if truth.il == 0 else xl)
            out = truth(x)
            yh, yl = out if isinstance(out, tuple) else ((out, None) if truth.ol == 0 else (None, out))
            # The original's output: the high channels, and the low ones upsampled (their 2x2 means are yl).
            target = torch.empty(4, 12, *(yh if yh is not None else F.interpolate(yl, scale_factor=2)).shape[2:])
            if yh is not None:
                target[:, list(truth.out_partition.high)] = yh
            if yl is not None:
                target[:, list(truth.out_partition.low)] = F.interpolate(yl, scale_factor=2, mode="nearest")
            assert fit.add(x, target)
        fit.solve(ridge=1e-12)
    for name, p in truth.named_parameters():
        assert rel_err(dict(layer.named_parameters())[name], p) < 1e-5, name


def _net() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1),
    )).eval()


def _images(n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    # Smooth random images (a blurred noise field), so that an octave down loses something but not everything.
    return [F.avg_pool2d(torch.randn(16, 3, 36, 36, generator=g), 5, 1) for _ in range(n)]


def test_reconstruct_brings_the_network_back_on_unseen_data_and_keeps_the_oracle():
    net = _net()
    x = torch.randn(1, 3, 32, 32)
    converted = octify.convert(net, example_inputs=x, alpha=0.5, min_size=4)
    train, held = _images(8, 1), _images(2, 2)
    fitted = octify.reconstruct(net, converted, train)
    record = octify.record_of(fitted).reconstruction
    assert record["layers"] == 4 and record["skipped"] == [] and record["samples"] == 128  # the last conv: alpha_out 0, fitted too
    assert record["kept"] == "reconstructed" and record["rel_error_after"] < 0.5 * record["rel_error_before"]
    before, after = octify.fidelity(net, converted, held), octify.fidelity(net, fitted, held)
    assert after["rel_error"] < 0.2 * before["rel_error"], (before, after)  # measured: 0.200 -> 0.013
    assert after["cosine"] > before["cosine"]
    # The converted model given is not changed; with octave=1 there is nothing to fit and nothing moves.
    assert octify.record_of(converted).reconstruction == {}
    exact = octify.convert(net, example_inputs=x, octave=1)
    same = octify.reconstruct(net, exact, train[:2])
    with torch.no_grad():
        assert rel_err(same(held[0]), net(held[0])) < 1e-5


def test_a_reconstruction_that_makes_things_worse_is_not_kept(monkeypatch):
    net = _net()
    converted = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), alpha=0.5, min_size=4)

    def ruin(self, ridge=1e-4):
        for p in self.layer.parameters():
            p.data.normal_(0, 10)

    monkeypatch.setattr(LayerFit, "solve", ruin)
    fitted = octify.reconstruct(net, converted, _images(2, 1))
    record = octify.record_of(fitted).reconstruction
    assert record["kept"] == "before (reconstruction did not lower the relative error)"
    assert record["rel_error_after"] > record["rel_error_before"]
    for (name, a), b in zip(fitted.state_dict().items(), converted.state_dict().values()):
        assert torch.equal(a, b), name


def test_reconstruct_says_what_it_expected():
    net = _net()
    converted = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32), alpha=0.5, min_size=4)
    with pytest.raises(ValueError, match=r"octify.reconstruct: rows must be an integer >= 1, found 0"):
        octify.reconstruct(net, converted, _images(1, 1), rows=0)
    with pytest.raises(TypeError, match=r"octify.reconstruct: expected an iterable of batches, found one Tensor"):
        octify.reconstruct(net, converted, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"LayerFit.*expected a dense, ungrouped, zero-padded OctConv2d"):
        LayerFit(octify.OctConv2d(8, 8, 3, groups=8, padding=1))
