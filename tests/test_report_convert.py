"""compare(resnet50, octify.convert(resnet50, alpha=0.5), x): the report on a converted model.

Relies on convert()'s contract: the OctConv2d / OctBatchNorm2d modules of the returned
GraphModule keep the qualified names of the Conv2d / BatchNorm2d they replace.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
import torchvision
from rich.console import Console

import octify
from octify.report import octave_macs_ratio

TOTALS = ("macs", "flops", "params", "feature_map_bytes")

pytestmark = pytest.mark.slow  # resnet50 at 224, converted and profiled


@pytest.fixture(scope="module")
def comparison():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    converted = octify.convert(model, alpha=0.5, example_inputs=x)
    return model, converted, octify.compare(model, converted, x)


def test_totals(comparison):
    model, converted, c = comparison
    assert c.before.macs == 4_089_184_256  # torchvision ResNet-50 at 224: the paper's 4.1 G
    assert c.before.flops == 2 * 4_089_184_256
    # Conversion tiles the weights: the same parameter count (25,557,032).
    assert c.before.params == c.after.params == sum(p.numel() for p in model.parameters()) == 25_557_032
    assert sum(p.numel() for p in converted.parameters()) == 25_557_032
    # Octave at 0.5 on stages 1-3: well below the original, above the all-layers bound 0.4375.
    assert 0.4375 < c.ratio("macs") < 0.7
    assert c.ratio("macs") == c.after.macs / c.before.macs


def test_totals_are_sums_of_rows(comparison):
    _, _, c = comparison
    for side in (c.before, c.after):
        for key in TOTALS:
            assert getattr(side, key) == sum(getattr(r, key) for r in side.layers), key
    # And over the matched table: every row of each side appears once.
    for key in TOTALS:
        assert c.before.__getattribute__(key) == sum(getattr(p.before, key) for p in c.layers if p.before is not None)
        assert c.after.__getattribute__(key) == sum(getattr(p.after, key) for p in c.layers if p.after is not None)


def test_converted_convs_keep_their_names_and_follow_the_formula(comparison):
    model, converted, c = comparison
    plain = dict(model.named_modules())
    oct_convs = [n for n, m in converted.named_modules() if isinstance(m, octify.OctConv2d)]
    assert len(oct_convs) >= 40 and [r.name for r in c.convs] != []
    assert sorted(r.name for r in c.convs) == sorted(oct_convs)
    exact = 0
    for row in c.convs:
        assert isinstance(plain.get(row.name), torch.nn.Conv2d), row.name  # same qualified name as the original conv
        pair = c.layer(row.name)
        assert pair.before.type == "Conv2d" and pair.after.type == "OctConv2d"
        assert row.macs_before == pair.before.macs and row.macs_after == pair.after.macs
        assert row.measured_macs_ratio == pair.after.macs / pair.before.macs
        assert row.theoretical_macs_ratio == pytest.approx(octave_macs_ratio(row.alpha_in, row.alpha_out), abs=0.02)
        h, w = pair.before.output_shapes[0][-2:]
        if h % 2 == 0 and w % 2 == 0:  # even maps: the four-path formula is exact
            assert row.measured_macs_ratio == pytest.approx(row.theoretical_macs_ratio, rel=1e-12), row.name
            exact += 1
    assert exact >= 40
    # Stage 1, alpha 0.5 on both sides: 1 - 3/4 * 0.5 * 1.5 = 0.4375.
    assert c.layer("layer1.0.conv2").ratio("macs") == 0.4375
    assert c.layer("layer1.0.conv2").after.macs == 50_577_408  # 64*64*9*56*56 = 115,605,504 * 0.4375
    assert c.layer("layer1.0.bn2").after.type == "OctBatchNorm2d"
    assert c.layer("layer1.0.bn2").ratio("feature_map_bytes") == 0.625  # 1 - 3/4 * 0.5


def test_report_renders_and_serialises(comparison):
    _, _, c = comparison
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    console.print(c)
    text = console.export_text()
    assert "4.09 G" in text and "2.19 G" in text and "0.536" in text
    layer1 = next(l for l in text.splitlines() if l.startswith("layer1 "))
    assert "10/10" in layer1 and "667.94 M" in layer1 and "0.456" in layer1  # (12.85 + 115.61*3 ... ) per stage
    console.print(c.layer_table())
    line = next(l for l in console.export_text().splitlines() if l.startswith("layer1.0.conv2 "))
    assert "OctConv2d" in line and "0.5/0.5" in line and "0.438" in line  # per-layer MACs ratio
    d = c.to_dict()
    assert d["before"]["macs"] == 4_089_184_256 and d["after"]["macs"] == c.after.macs
    assert len(d["convs"]) == len(c.convs)
    json.dumps(d)
