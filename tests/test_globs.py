"""Stage 3c: exclude / alpha_for globs that match no conv are warned about, with what they come
closest to; globs that match, and callables, are not."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import octify
from octify.fx.globs import unmatched_glob_messages


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.layer1(self.stem(x)).mean((2, 3)))


def convert(**kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        octify.convert(Net().eval(), 0.5, example_inputs=torch.randn(1, 3, 16, 16), **kw)
    return [str(w.message) for w in caught if "matches no conv" in str(w.message)], caught


def test_a_typo_names_the_closest_block():
    [msg], caught = convert(exclude=("layers1.*",))
    assert msg == "octify: exclude 'layers1.*' matches no conv, so it changes nothing. Hint: did you mean 'layer1.*', 'layer1.2', 'layer1.0'?"
    assert [w.filename for w in caught if "matches no conv" in str(w.message)] == [__file__]  # points at the caller


def test_a_block_or_a_linear_is_not_a_conv():
    msgs, _ = convert(exclude=("layer1",), alpha_for={"head": 0.0})
    assert msgs == [
        "octify: exclude 'layer1' matches no conv, so it changes nothing; it matches layer1 (Sequential), which is "
        "not a conv. Hint: 'layer1.*' matches the convs inside it",
        "octify: alpha_for 'head' matches no conv, so it changes nothing; it matches head (Linear), which is not a conv",
    ]


@pytest.mark.parametrize("kw", [dict(exclude=("layer1.*",)), dict(alpha_for={"layer1.0": 0.25}),
                                dict(alpha_for=lambda name, conv, shape: None), dict(exclude=("stem",))])
def test_globs_that_match_and_callables_are_quiet(kw):
    assert convert(**kw)[0] == []


def test_nothing_close_shows_what_names_look_like():
    net = Net()
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    [msg] = unmatched_glob_messages(names, dict(net.named_modules()), "exclude", ["zzz*"])
    assert msg == "octify: exclude 'zzz*' matches no conv, so it changes nothing (conv names look like 'stem')"
