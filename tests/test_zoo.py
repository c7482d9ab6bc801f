"""Every torchvision classification CNN converts, runs forward and backward, and holds the octave=1 oracle.

Run alone with ``make test-zoo`` (``pytest -m zoo``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import octify

# Transformers are no CNNs: their convs are patch embeddings and the rest is attention.
EXCLUDED_PREFIXES = ("vit_", "swin_", "maxvit_")
ZOO = sorted(
    n for n in torchvision.models.list_models(module=torchvision.models) if not n.startswith(EXCLUDED_PREFIXES)
)

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


def test_zoo_is_the_expected_list() -> None:
    assert len(ZOO) == 68, "torchvision's model list changed: review the zoo test's exclusions"


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
