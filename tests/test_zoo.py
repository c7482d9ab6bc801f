"""Every torchvision classification CNN converts, runs forward and backward, and holds the octave=1 oracle.

Run alone with ``make test-zoo`` (``pytest -m zoo``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import octify

# The installed torchvision's classifiers, whatever its version, less named exclusions.
CLASSIFIERS = sorted(torchvision.models.list_models(module=torchvision.models))
EXCLUSION_REASONS = {
    # Transformers are no CNNs: their one conv is the patch embedding, the rest is attention.
    "vit_": "a vision transformer: its only conv is the patch embedding",
    "swin_": "a windowed-attention transformer: its only conv is the patch embedding",
    "maxvit_": "attention blocks around depthwise MBConvs at 7x7 windows; not a CNN in the zoo's sense",
    # The suite's slowest test (about 60 s): regnet_y_32gf and regnet_y_16gf have the same blocks.
    "regnet_y_128gf": "regnet_y_32gf's blocks at 4x the width (644M parameters): a minute of the suite, no structure the others lack",
}
EXCLUDED = {n: why for n in CLASSIFIERS for prefix, why in EXCLUSION_REASONS.items() if n.startswith(prefix)}
ZOO = [n for n in CLASSIFIERS if n not in EXCLUDED]

# Families whose blocks must be threaded end to end: no merge anywhere in the network.
NO_MERGE_FAMILIES = ("resnet", "resnext", "wide_resnet", "mobilenet_v2", "mobilenet_v3", "efficientnet", "regnet", "densenet", "googlenet", "inception")


# The one size exception: inception_v3's auxiliary classifier (present in training mode only)
# runs a 5x5 conv on a map that is 3x3 at 224x224, so the original itself cannot train at 224.
TRAIN_SIZE = {"inception_v3": 299}


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet/inception init warnings
        return torchvision.models.get_model(name, weights=None)


def _outputs(out: object) -> list[torch.Tensor]:
    """All tensor outputs: googlenet/inception in train mode also return their aux classifiers'."""
    return [t for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor)]


def test_zoo_follows_the_installed_torchvision() -> None:
    # Every classifier is either in the zoo or excluded with a reason; each exclusion still names models.
    assert set(ZOO) | set(EXCLUDED) == set(CLASSIFIERS) and not set(ZOO) & set(EXCLUDED)
    for prefix in EXCLUSION_REASONS:
        assert any(n.startswith(prefix) for n in CLASSIFIERS), f"exclusion {prefix!r} matches no model: remove it"
    for family in ("resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121", "regnet_y_400mf", "convnext_tiny"):
        assert family in ZOO, f"{family} is missing from the zoo"


@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model(name: str) -> None:
    model = _build(name).eval()
    x = torch.randn(1, 3, 224, 224)

    # The oracle: octave=1 resamples nothing, so the converted model computes the same function.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = octify.convert(model, alpha=0.5, octave=1, example_inputs=x)
    with torch.no_grad():
        y = model(x)
        y1 = exact(x)
    rel = ((y1 - y).abs().max() / y.abs().max()).item()
    assert rel <= 1e-4, f"{name}: octave=1 conversion differs from the original by {rel:.2e} (relative)"

    # The real thing: alpha=0.5, octave 2, default policy, training mode; forward and backward.
    model.train()
    size = TRAIN_SIZE.get(name, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = octify.convert(model, alpha=0.5, example_inputs=torch.randn(1, 3, size, size))
    assert converted.training
    outs = _outputs(converted(torch.randn(2, 3, size, size)))
    assert [tuple(o.shape) for o in outs] == [(2, 1000)] * len(outs)
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.square().mean() for o in outs).backward()
    octs = [m for m in converted.modules() if isinstance(m, octify.OctConv2d)]
    assert octs, f"{name}: no conv was converted"
    for m in octs:
        for pname, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {pname} got no finite gradient"

    record = octify.record_of(converted)
    assert len(record.convs) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if name.startswith(NO_MERGE_FAMILIES):
        assert record.count("merge") == 0, f"{name}: merges inserted: {record.merges}"
        assert record.threaded.get("operator.add", 0) + record.threaded.get("torch.cat", 0) + record.threaded.get("operator.mul", 0) > 0
