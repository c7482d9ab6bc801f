"""How far octave pairs run through a broad sample of timm's CNN architectures (issue 22).

Each model is built with random weights (nothing downloaded), converted at alpha 0.5 with the
default policy on a 1x3xSxS input, and checked against the octave=1 oracle. A "merge" puts a pair
back to one full-resolution tensor inside the network (the merge before a model output or a
flatten head costs nothing and is not counted); a model "merges often" when its merges number
more than a quarter of its octave convs: past that, a merge sits in most blocks and costs more
than the octave convs save.

    python benchmarks/timm_sample.py              # the whole sample, about 3 minutes on 2 cores
    python benchmarks/timm_sample.py ecaresnet26t skresnet18   # some of it
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from result_table import ResultTable  # noqa: E402

# Small variants of the CNN families of timm 1.0 (attention hybrids included where a conv stem
# and conv stages do most of the work), one or two per family.
SAMPLE = [
    "resnet18", "resnet50d", "resnext26ts", "seresnext26d_32x4d", "ecaresnet26t", "ecaresnet50d", "skresnet18",
    "skresnext50_32x4d", "res2net50_14w_8s", "res2next50", "resnest14d", "gcresnext26ts", "resnetrs50",
    "dpn68", "dpn68b", "dla34", "dla46x_c", "densenet121", "vovnet39a", "ese_vovnet19b_dw", "cspdarknet53", "cspresnet50",
    "darknet17", "hrnet_w18_small", "regnetx_002", "regnety_002", "efficientnet_b0", "efficientnet_lite0", "mobilenetv2_100",
    "mobilenetv3_small_100", "mnasnet_100", "ghostnet_100", "rexnet_100", "mixnet_s", "tinynet_a", "lcnet_050", "fbnetc_100",
    "semnasnet_100", "gernet_s", "repvgg_a0", "selecsls42b", "xception41", "inception_v3", "poolformer_s12",
    "convnext_atto", "eca_halonext26ts", "botnet26t_256", "lambda_resnet26t", "cs3darknet_focus_s", "nf_resnet26",
    "ghostnetv2_100", "hgnetv2_b0", "mobilenetv4_conv_small",
]
# Attention over positions at fixed window / feature sizes: these need their own input size.
SIZES = {"eca_halonext26ts": 256, "botnet26t_256": 256}


def merges_inside(rec) -> list:
    """The merges a network pays for: not the one in front of a model output or of a flatten head
    (``flatten``/``view`` after global pooling takes a plain (N, C, 1, 1) tensor anyway)."""
    return [m for m in rec.merges if m.kind == "merge" and m.reason != "model output"]


def run(name: str, size: int) -> dict:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, SIZES.get(name, size), SIZES.get(name, size))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = octify.convert(model, example_inputs=x)
        exact = octify.convert(model, example_inputs=x, octave=1)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        want = model(x)
        rel = ((exact(x) - want).abs().max() / want.abs().max()).item()
        converted(x)
    rec = octify.record_of(converted)
    merges = merges_inside(rec)
    octave = len(rec.converted)
    return {
        "name": name, "octave": octave, "convs": len(rec.convs), "merges": len(merges), "oracle": rel, "seconds": seconds,
        "often": octave > 0 and len(merges) > octave / 4,
        "ops": collections.Counter(m.target for m in merges).most_common(3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="models of the sample to run (default: all)")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    names = args.names or SAMPLE
    rows = []
    table = ResultTable("timm-sample", ["model", "octave convs", "merges", "merges often", "oracle (octave=1)", "convert s", "merged at"],
                        "-::-::-")
    for name in names:
        try:
            r = run(name, args.size)
        except Exception as e:  # a model this timm cannot build, or a conversion failure: in the table
            table.row(name, "-", "-", "-", "-", "-", f"failed: {type(e).__name__}: {str(e)[:120]}")
            rows.append({"name": name, "failed": True})
            continue
        rows.append(r)
        ops = ", ".join(f"{op} ({n})" for op, n in r["ops"])
        table.row(name, f"{r['octave']}/{r['convs']}", r["merges"], "yes" if r["often"] else "no", f"{r['oracle']:.1e}",
                  f"{r['seconds']:.1f}", ops)
    done = [r for r in rows if not r.get("failed")]
    table.note(f"{len(done)} of {len(rows)} models converted, {sum(r['often'] for r in done)} merge after more than a quarter of "
               f"their octave convs, worst oracle {max(r['oracle'] for r in done):.1e}; timm {__import__('timm').__version__}, "
               f"input 1x3x{args.size}x{args.size} (256 for {', '.join(SIZES)}), alpha 0.5, random weights.")
    table.save(unless="a part of the sample" if args.names else "")


if __name__ == "__main__":
    main()
