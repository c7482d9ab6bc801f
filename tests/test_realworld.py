"""The models people actually have (issue 11): segmentation-models-pytorch, timm, torchvision
segmentation and detection backbones, Hugging Face transformers' vision CNNs. Random weights,
small inputs, one thread. Each converts as given (no hints), keeps its output structure, holds
the octave=1 oracle, and has no merge at a resampling op or a shape read.

Run alone with ``pytest -m realworld``; installed by ``make test`` through the ``models`` extra.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

import octify

from conftest import randomize_bn, rel_err

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from realworld import HF, SMP_ARCHS, TIMM, hf_model  # noqa: E402  (the same models, at full size there)

pytestmark = pytest.mark.realworld


def _library(name: str):
    """The model library a test needs: skips that test alone when it is missing (the torchvision
    tests here need none of them)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (the models extra: pip install '.[models]')")


RTOL = 1e-4
# Ops at which a merge would mean a rule is missing where real decoders need one.
NO_MERGE_AT = ("F.interpolate", "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "pair_size", "getattr", ".size()", ".dim()")


def _tensors(out, where: str = "output") -> dict:
    """{path: tensor} for every tensor of an output (a tensor, a tuple or list, a dict or a
    ModelOutput, nested): an FPN's five levels, each field of a ModelOutput."""
    if isinstance(out, torch.Tensor):
        return {where: out}
    if isinstance(out, dict):
        items = out.items()
    elif isinstance(out, (tuple, list)):
        items = enumerate(out)
    else:
        return {}
    found: dict = {}
    for key, value in items:
        found.update(_tensors(value, f"{where}[{key!r}]"))
    return found


def _check(model: torch.nn.Module, x: torch.Tensor, *, min_converted: int = 1) -> octify.ConversionRecord:
    randomize_bn(model)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = octify.convert(model, example_inputs=x, octave=1)
        converted = octify.convert(model, example_inputs=x)
    with torch.no_grad():
        want = model(x)
        got = exact(x)
        octave = converted(x)
    # The output keeps its structure: the same keys (a dict for mappings), the same shapes.
    if isinstance(want, dict):  # the same mapping type (OrderedDict, ModelOutput), the same keys
        assert type(got) is type(want) and type(octave) is type(want)
        assert list(got) == list(want) and list(octave) == list(want)
    want, got, octave = _tensors(want), _tensors(got), _tensors(octave)
    assert want and list(got) == list(want) and list(octave) == list(want)
    for path, w in want.items():  # every output tensor holds the oracle, not only the first
        assert got[path].shape == w.shape == octave[path].shape and torch.isfinite(octave[path]).all(), path
        assert rel_err(got[path], w) <= RTOL, (path, rel_err(got[path], w))
    rec = octify.record_of(converted)
    assert len(rec.converted) >= min_converted
    bad = [m for m in rec.merges if m.kind == "merge" and m.target in NO_MERGE_AT]
    assert not bad, bad
    return rec


# Named exceptions to "at least one conv converted", each with its reason.
CONVERTS_NOTHING = {
    ("PAN", "efficientnet-b0"): "smp's EfficientNet encoder is built from Conv2dStaticSamePadding (a Conv2d subclass "
    "with its own forward: kept whole and plain), and PAN's decoder runs on maps below min_size at 128x128",
    ("Segformer", "efficientnet-b0"): "the same encoder, and Segformer's decoder mixes channels with 1x1 convs on "
    "maps it flattens to tokens: nothing left to convert",
}


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet-b0"])
@pytest.mark.parametrize("arch", SMP_ARCHS)
def test_segmentation_models_pytorch(arch, encoder):
    smp = _library("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=3)
    size = 128 if arch == "PAN" else 64  # PAN's pyramid pools a 64x64 input below 1x1: the original fails
    rec = _check(model, torch.randn(1, 3, size, size), min_converted=0 if (arch, encoder) in CONVERTS_NOTHING else 1)
    # The segmentation logits come out at full resolution: the head is the last layer.
    heads = [c for c in rec.convs if c.name.startswith("segmentation_head")]
    assert heads and all(c.alpha_out == 0.0 for c in heads)


# Families built from timm's norm-act layers: no merge anywhere inside a block.
NORM_ACT_NO_MERGE = {"efficientnet_b0", "mobilenetv3_small_100", "regnety_002", "cspresnet50", "vovnet39a",
                     "ese_vovnet19b_dw", "darknet17"}
# The patterns of issue 22, each with no merge left: ECA's expanded gate, PoolFormer's GroupNorm(1)
# and layer scale, mixed-kernel and dual-path channel ranges, ConvNeXt's per-pixel LayerNorm (its
# region plain), HGNetV2's one-element learnable scales.
PATTERNS_NO_MERGE = {"ecaresnet26t", "poolformer_s12", "mixnet_s", "dpn68b", "convnext_atto", "hgnetv2_b0", "rexnet_100"}


@pytest.mark.parametrize("name", TIMM)
def test_timm(name):
    timm = _library("timm")
    torch.manual_seed(0)
    rec = _check(timm.create_model(name, pretrained=False), torch.randn(1, 3, 96, 96))
    if name in NORM_ACT_NO_MERGE:
        assert rec.count("merge") == 0, rec.merges
        assert rec.threaded.get("BatchNormAct2d", 0) > 0
    if name in PATTERNS_NO_MERGE:
        assert rec.count("merge") == 0 and rec.count("align") == 0, rec.merges
    if name == "convnext_atto":  # the blocks' LayerNorm over channels keeps their region plain, said why
        assert any(c.plain_reason and c.plain_reason.startswith("its channels are normalised or mixed at each pixel") for c in rec.convs)
    if name == "tf_efficientnet_b0":  # Conv2dSame: a Conv2d subclass with its own forward, kept whole
        same = [c for c in rec.convs if c.plain_reason and "Conv2dSame is a Conv2d subclass" in c.plain_reason]
        assert same


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_torchvision_segmentation(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None)
    rec = _check(model, torch.randn(1, 3, 96, 96))
    assert rec.count("merge") == 0


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_large"])
def test_torchvision_detection_backbones_with_fpn(backbone):
    from torchvision.models.detection import backbone_utils as B

    torch.manual_seed(0)
    if backbone == "resnet18":
        model = B.resnet_fpn_backbone(backbone_name=backbone, weights=None)
    else:
        model = B.mobilenet_backbone(backbone_name=backbone, weights=None, fpn=True)
    rec = _check(model, torch.randn(1, 3, 96, 96))
    assert rec.count("merge") == 0


def _hf(name):
    _library("transformers")
    return hf_model(name)


@pytest.mark.parametrize("name", HF)
def test_transformers_vision_cnns(name):
    torch.manual_seed(0)
    rec = _check(_hf(name), torch.randn(1, 3, 64, 64), min_converted=0 if name == "ConvNext" else 1)
    assert rec.count("merge") == 0, rec.merges
    if name == "ConvNext":
        # Its LayerNorm runs over the channels of each pixel (channels-last) and its MLP is Linear:
        # the blocks' region stays plain (no merge in every block), which here is every conv.
        region = [c for c in rec.convs if c.plain_reason.startswith("its channels are normalised or mixed at each pixel")]
        assert not rec.converted and len(region) >= 2, rec.convs


@pytest.mark.parametrize("encoder", ["tu-efficientnet_b0", "tu-mobilenetv3_small_100"])
def test_smp_unet_with_a_timm_encoder(encoder):
    # The case that merged 47 times before: timm's norm-act encoder under smp's decoder.
    smp = _library("segmentation_models_pytorch")
    _library("timm")
    torch.manual_seed(0)
    rec = _check(smp.Unet(encoder_name=encoder, encoder_weights=None, classes=3), torch.randn(1, 3, 64, 64))
    assert rec.count("merge") == 0, rec.merges
