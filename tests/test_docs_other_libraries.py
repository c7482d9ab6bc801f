"""docs/other-libraries.md, "Coming from another OctConv library": its code runs and prints what its
comments say, and the differences it states hold (braincreators' split, ValueError instead of assert)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

from octify import OctConv2d, Partition

PAGE = Path(__file__).resolve().parents[1] / "docs" / "other-libraries.md"


def _section() -> str:
    text = PAGE.read_text()
    assert text.startswith("# Coming from another OctConv library")
    return text


def _blocks() -> list:
    return re.findall(r"```python\n(.*?)```", _section(), re.S)


def test_the_section_has_its_examples():
    assert len(_blocks()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_each_example_prints_what_its_comments_say(index):
    code = _blocks()[index]
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(") and "#" in line]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"<docs/other-libraries.md block {index}>", "exec"), {"__name__": f"docs_block_{index}"})
    assert out.getvalue().strip().splitlines() == expected and expected


def _first_block() -> dict:
    namespace = {"__name__": "docs_block_0"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(_blocks()[0], "<docs/other-libraries.md block 0>", "exec"), namespace)
    return namespace


def test_the_splits_it_states():
    # octify: the last floor(alpha * C) channels are low (the high branch gets the rounding)
    assert OctConv2d(5, 5, 3, alpha=0.5).in_partition == Partition(high=(0, 1, 2), low=(3, 4))
    assert len(OctConv2d(20, 20, 3, alpha=0.8).out_partition.low) == 16
    # braincreators' split, as the page's bc_split computes it: 2 high + 3 low at C=5, and, float
    # error included, 3 + 17 at C=20, alpha 0.8 -- where octify puts 4 + 16
    block = _first_block()
    bc_split = block["bc_split"]
    assert (len(bc_split(5, 0.5).high), len(bc_split(5, 0.5).low)) == (2, 3)
    assert (len(bc_split(20, 0.8).high), len(bc_split(20, 0.8).low)) == (3, 17)
    assert bc_split(20, 0.8) != OctConv2d(20, 20, 3, alpha=0.8).out_partition
    # and the layer the page builds with it splits its channels that way, on both sides
    assert block["conv"].in_partition == block["conv"].out_partition == bc_split(5, 0.5)


def test_a_wrong_pair_is_a_value_error_not_an_assertion():
    conv = OctConv2d(5, 5, 3, padding=1, alpha=0.5)
    with pytest.raises(ValueError, match="expected a high input with 3 channels, found 2"):
        conv((torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4)))


def test_braincreators_positional_alpha_is_refused_not_taken_as_a_dilation():
    # braincreators: OctConv2d(in, out, kernel, stride, padding, alpha); octify's 6th is dilation
    with pytest.raises(TypeError, match=r"OctConv2d: dilation must be an integer >= 1, found 0.5 \(float\)"):
        OctConv2d(3, 10, 3, 1, 1, 0.5)
    with pytest.raises(ValueError, match="OctConv2d: stride must be an integer >= 1, found 0"):
        OctConv2d(3, 10, 3, 0)
    with pytest.raises(ValueError, match="OctConv2d: padding must be an integer >= 0, found -1"):
        OctConv2d(3, 10, 3, 1, -1)
