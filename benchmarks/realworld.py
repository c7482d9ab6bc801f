"""What converts beyond torchvision's classifiers, as given: other libraries' models at full size.

Each model is built with random weights (nothing downloaded), converted with no hints or options
(alpha 0.5, default policy) on a 1x3xSxS input (224; 256 for segmentation-models-pytorch, whose
pyramids want a multiple of 32 that pools to 8x8), checked against the octave=1 oracle on every
output tensor, and counted: the Conv2d layers that became OctConv2d, the merges (a pair put back
to one plain tensor inside the network, with the op it happened at; the merge in front of a model
output is not counted), the MACs ratio (``octify.profile``) and the conversion time, one thread.
``tests/test_realworld.py`` holds the same models at small sizes in the suite.

    python benchmarks/realworld.py                       # every library installed (under 3 minutes)
    python benchmarks/realworld.py --libraries timm
    python benchmarks/realworld.py --video-audio         # torchvision's video nets and M5 (examples/audio.py)

``--video-audio`` makes the table of Conv3d / Conv1d models instead: torchvision's video
classifiers on a 16-frame clip and the M5 audio net of ``examples/audio.py`` on one second at
16 kHz, with the MACs before and after.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from octify.tune.data import float_outputs  # noqa: E402
from result_table import ResultTable  # noqa: E402

SMP_ARCHS = ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "PAN", "UPerNet", "Segformer"]
TIMM = ["efficientnet_b0", "mobilenetv3_small_100", "regnety_002", "cspresnet50", "vovnet39a", "rexnet_100", "resnet18d",
        "ese_vovnet19b_dw", "dla34", "ghostnet_100", "darknet17", "tf_efficientnet_b0", "ecaresnet26t", "poolformer_s12",
        "mixnet_s", "dpn68b", "convnext_atto", "hgnetv2_b0"]
HF = ["ResNet", "ResNetForImageClassification", "ConvNext", "MobileNetV2", "RegNet"]
LIBRARIES = ["segmentation-models-pytorch", "timm", "torchvision segmentation", "torchvision detection", "transformers"]


def hf_model(name: str) -> torch.nn.Module:
    """A transformers vision CNN from its config (random weights, no hub): small configurations,
    as ``tests/test_realworld.py`` builds them."""
    T = importlib.import_module("transformers")
    resnet = dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])
    return {
        "ResNet": lambda: T.ResNetModel(T.ResNetConfig(**resnet)),
        "ResNetForImageClassification": lambda: T.ResNetForImageClassification(T.ResNetConfig(**resnet, num_labels=3)),
        "ConvNext": lambda: T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])),
        "MobileNetV2": lambda: T.MobileNetV2Model(T.MobileNetV2Config(depth_multiplier=0.35)),
        "RegNet": lambda: T.RegNetModel(T.RegNetConfig()),
    }[name]()


def _detection(backbone: str) -> torch.nn.Module:
    from torchvision.models.detection import backbone_utils as B

    if backbone == "resnet18":
        return B.resnet_fpn_backbone(backbone_name=backbone, weights=None)
    return B.mobilenet_backbone(backbone_name=backbone, weights=None, fpn=True)


def models(library: str) -> List[Tuple[str, Callable[[], torch.nn.Module], int]]:
    """(label, builder, input size) of each model of ``library``."""
    if library == "segmentation-models-pytorch":
        smp = importlib.import_module("segmentation_models_pytorch")
        return [(f"{arch} ({enc})", lambda a=arch, e=enc: getattr(smp, a)(encoder_name=e, encoder_weights=None, classes=3), 256)
                for enc in ("resnet18", "efficientnet-b0") for arch in SMP_ARCHS]
    if library == "timm":
        timm = importlib.import_module("timm")
        return [(name, lambda n=name: timm.create_model(n, pretrained=False), 224) for name in TIMM]
    if library == "torchvision segmentation":
        seg = torchvision.models.segmentation
        return [(name, lambda n=name: getattr(seg, n)(weights=None, weights_backbone=None), 224)
                for name in ("fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")]
    if library == "torchvision detection":
        return [(f"{b} + FPN", lambda b=b: _detection(b), 224) for b in ("resnet18", "mobilenet_v3_large")]
    return [(name, lambda n=name: hf_model(n), 224) for name in HF]


def _m5() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("_octify_example_audio", Path(__file__).resolve().parents[1] / "examples" / "audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()


VIDEO_AUDIO = [
    ("torchvision r3d_18", lambda: torchvision.models.video.r3d_18(), (1, 3, 16, 112, 112)),
    ("torchvision mc3_18", lambda: torchvision.models.video.mc3_18(), (1, 3, 16, 112, 112)),
    ("torchvision r2plus1d_18", lambda: torchvision.models.video.r2plus1d_18(), (1, 3, 16, 112, 112)),
    ("torchvision s3d", lambda: torchvision.models.video.s3d(), (1, 3, 16, 224, 224)),
    ("M5 (`examples/audio.py`)", _m5, (1, 1, 16000)),
]


def _macs(n: float) -> str:
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.0f} M"


def video_audio_table() -> None:
    table = ResultTable("video-audio", ["model", "input", "converted", "merges", "MACs before -> after", "oracle (octave=1)"], "--::-:")
    for label, build, shape in VIDEO_AUDIO:
        r = measure(build, shape)
        table.row(label, "x".join(map(str, shape)), r["converted"], r["merges"],
                  f"{_macs(r['macs_before'])} -> {_macs(r['macs_after'])} ({r['macs']:.2f}x)", f"{r['oracle']:.1e}")
    table.note("alpha 0.5, default policy, random weights, one thread; MACs from octify.profile.")
    table.save()


def measure(build: Callable[[], torch.nn.Module], size) -> Dict[str, object]:
    """Convert the model ``build`` makes on one input (``size``: S for 1x3xSxS, or a whole shape)."""
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(*size) if isinstance(size, tuple) else torch.randn(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        converted = octify.convert(model, example_inputs=x)
        seconds = time.perf_counter() - start
        exact = octify.convert(model, example_inputs=x, octave=1)
    with torch.no_grad():
        want, got = float_outputs(model(x)), float_outputs(exact(x))
    oracle = max(((g - w).abs().max() / w.abs().max().clamp_min(1e-12)).item() for g, w in zip(got, want))
    rec = octify.record_of(converted)
    merges = [m for m in rec.merges if m.kind == "merge" and m.reason != "model output"]
    at = collections.Counter(m.target for m in merges).most_common(2)
    out = {"converted": f"{len(rec.converted)}/{len(rec.convs)}", "merges": f"{len(merges)}" + (f" ({', '.join(t for t, _ in at)})" if at else ""),
            "macs_before": octify.profile(model, x).macs, "macs_after": octify.profile(converted, x).macs, "oracle": oracle, "seconds": seconds}
    out["macs"] = out["macs_after"] / out["macs_before"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=LIBRARIES)
    p.add_argument("--video-audio", action="store_true", help="the table of torchvision's video nets and M5 instead")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.video_audio:
        video_audio_table()
        return
    table = ResultTable("realworld", ["library", "model", "converted", "merges", "MACs ratio", "oracle (octave=1)", "convert s"], "--:-:::")
    worst, missing = 0.0, []
    for library in args.libraries:
        try:
            entries = models(library)
        except ImportError:
            missing.append(library)
            continue
        for label, build, size in entries:
            r = measure(build, size)
            worst = max(worst, float(r["oracle"]))
            table.row(library, label, r["converted"], r["merges"], f"{r['macs']:.2f}",
                      f"{r['oracle']:.1e}", f"{r['seconds']:.1f}")
    versions = {lib: importlib.import_module(mod).__version__ for lib, mod in
                (("timm", "timm"), ("segmentation-models-pytorch", "segmentation_models_pytorch"), ("transformers", "transformers"))
                if lib not in missing and importlib.util.find_spec(mod)}
    table.note(f"{len(table.rows)} models, worst oracle {worst:.1e} over every output tensor; 224x224 (smp 256x256), alpha 0.5, "
               "default policy, one thread; "
               + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    table.save(unless="" if args.libraries == LIBRARIES and not missing else (f"not installed: {', '.join(missing)}" if missing else "a part of the libraries"))


if __name__ == "__main__":
    main()
