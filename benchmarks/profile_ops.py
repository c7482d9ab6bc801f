"""Where the time of a frozen octave model goes, against the plain model: a ``torch.profiler`` breakdown.

For each model, batch and deployed form, the octave model (``octify.convert(m, alpha=0.5)``) and
the best plain configuration of the original run under ``torch.profiler`` (CPU, inference mode,
after warm-up). The forms are those of ``latency.py --deploy`` (``benchmarks/forms.py``): eager
(``octify.freeze`` of each, the octave one frozen on the batch it runs), compiled (inductor with
freezing, on both frozen models) and int8 (README's PT2E flow on both). Per forward, the table
gives the time without the profiler, the number of operator calls, and the profiled time split
into the convolution kernels (oneDNN's, float or int8, and PyTorch's own), the matrix products
(the 1x1 octave paths, the classifier), the kernels inductor generated (pooling, concatenation,
the upsample-add, activations, q/dq), every other operator kernel (the same, uncompiled: views,
copies, additions), and the rest: Python, the GraphModule's or compiled graph's code and the
dispatcher outside any kernel. Each note under the table gives the bound this leaves: the ratio
the octave model would have if everything but its convolutions and products cost what the plain
model's does (no pooling, concatenation, upsample-add or extra calls at all), next to the setting's
target; where the bound misses the target, the convolutions themselves are what must get faster.
For the eager form, a second table (``profile-layers``) gives each
stage's layers' time on both sides, by forward hooks, against their MACs, and the time between
layers. It is the profile behind the speed figures of ``latency.py
--deploy``: how much of the MACs' saving the small convolutions keep, and what the extra calls cost.

    python benchmarks/profile_ops.py                     # the docs' table: eager resnet50 and resnet18, compiled resnet50, int8 resnet18; batch 1 and 8
    python benchmarks/profile_ops.py --forms eager --models resnet50 --batches 1 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
import torchvision
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from forms import TARGETS, compiled, for_int8, int8  # noqa: E402
from result_table import ResultTable  # noqa: E402

CONVOLUTIONS = {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::slow_conv3d_forward", "aten::_mkldnn_convolution",
                "aten::thnn_conv2d", "aten::_nnpack_spatial_convolution", "aten::slow_conv_dilated2d"}
# addmm_: a frozen 1x1 octave conv accumulates one path onto another in place (nn/_octconv_kernels.py).
PRODUCTS = {"aten::addmm", "aten::addmm_", "aten::mm", "aten::bmm", "aten::baddbmm"}
LIBRARIES = {"aten", "mkldnn", "onednn", "mkl", "quantized", "quantized_decomposed"}
FORMS = {"eager": ["resnet50", "resnet18"], "compiled": ["resnet50"], "int8": ["resnet18"]}  # the default models of each form
DEFAULT = (list(FORMS), None, [1, 8], 2)


def kind(key: str) -> str | None:
    """The column a profiler event's self time goes to; None for wrappers (their time is outside kernels)."""
    library = key.split("::")[0] if "::" in key else ""
    if key in CONVOLUTIONS or (library in {"mkldnn", "onednn"} and "conv" in key):
        return "conv"
    if key in PRODUCTS or (library in LIBRARIES and "linear" in key):
        return "mm"
    if "cpp_fused" in key:
        return "generated"
    return "other" if library in LIBRARIES else None


def breakdown(model, x: torch.Tensor, forwards: int) -> dict:
    """Per forward: unprofiled ms, operator calls, and the profiled ms by kind."""
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        walls = []
        for _ in range(forwards):
            t0 = time.perf_counter()
            model(x)
            walls.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(forwards):
                model(x)
        profiled = (time.perf_counter() - t0) * 1e3 / forwards
    out = {"ms": statistics.median(walls), "calls": 0.0, "conv": 0.0, "mm": 0.0, "generated": 0.0, "other": 0.0}
    for e in prof.key_averages():
        k = kind(e.key)
        if k is not None:
            out[k] += e.self_cpu_time_total / 1e3 / forwards
            out["calls"] += e.count / forwards
    out["host"] = max(0.0, profiled - sum(out[k] for k in ("conv", "mm", "generated", "other")))
    return out


def _split(got: dict) -> tuple[dict, dict]:
    """Each side's ms (``got``: both sides' :func:`breakdown`) in convolutions and products, and in everything else."""
    kernels = {s: got[s]["conv"] + got[s]["mm"] for s in got}
    rest = {s: got[s]["generated"] + got[s]["other"] + got[s]["host"] for s in got}
    return kernels, rest


def bound(got: dict) -> float:
    """The octave / plain ratio if the octave model paid only for its own convolutions and
    products and everything else cost what the plain model's does (``got``: both sides'
    :func:`breakdown`)."""
    kernels, rest = _split(got)
    return (kernels["octave"] + rest["plain"]) / (kernels["plain"] + rest["plain"])


def note(name: str, batch: int, form: str, got: dict, macs: float, target: float | None) -> str:
    """The line under the table for one model, batch and form: convolutions and products against
    the MACs, the rest in ms, and the :func:`bound` against the setting's target."""
    kernels, rest = _split(got)
    versus = "" if target is None else f" (target {target:.2f})"
    return (f"{name}, batch {batch}, {form}: the octave model's convolutions and products take "
            f"{kernels['octave'] / kernels['plain']:.2f}x the plain model's for {macs:.2f}x the MACs; everything else "
            f"{rest['octave']:.1f} ms against {rest['plain']:.1f}; with the plain model's everything else, the ratio would be "
            f"{bound(got):.2f}{versus}.")


def stage(name: str) -> str:
    """The stage a layer belongs to: the first part of its name (``layer3`` of ``layer3.0.conv2``)."""
    return name.split(".")[0]


def stage_times(models: dict, x: torch.Tensor, forwards: int) -> dict:
    """For each of ``models`` (side -> model), per forward, the median ms of each stage's layers
    with weights of their own (convs, octave convs, the classifier: the same names on both sides
    of a converted model), timed by forward hooks; ``"between layers"`` is the rest of the forward
    (activations, sums, pooling, and the splits and merges of pairs between layers) and
    ``"forward"`` the whole of it. The models' forwards alternate, as the speed benchmarks'
    do, so that a drift of the machine (or of its allocator) moves every side alike."""
    spent: dict = {}
    started: dict = {}

    def before(name):
        return lambda module, args: started.__setitem__(name, time.perf_counter())

    def after(name):
        return lambda module, args, out: spent.__setitem__(stage(name), spent.get(stage(name), 0.0) + time.perf_counter() - started[name])

    handles = [h for model in models.values() for name, m in model.named_modules()
               if name and not list(m.children()) and any(True for _ in m.parameters(recurse=False))
               for h in (m.register_forward_pre_hook(before(name)), m.register_forward_hook(after(name)))]
    per_forward: dict = {side: [] for side in models}
    try:
        with torch.inference_mode():
            for _ in range(3):
                for model in models.values():
                    model(x)
            for i in range(forwards):
                for side in list(models) if i % 2 == 0 else list(models)[::-1]:
                    spent.clear()
                    t0 = time.perf_counter()
                    models[side](x)
                    total = time.perf_counter() - t0
                    per_forward[side].append({**spent, "between layers": total - sum(spent.values()), "forward": total})
    finally:
        for h in handles:
            h.remove()
    return {side: {k: statistics.median(f[k] for f in runs) * 1e3 for k in runs[0]} for side, runs in per_forward.items()}


def stage_macs(model, x: torch.Tensor) -> dict:
    """Multiply-adds of each stage (``octify.profile``'s layers), and of the whole model under ``"forward"``."""
    rows = octify.profile(model, x).layers
    out = {"forward": float(sum(r.macs for r in rows))}
    for r in rows:
        out[stage(r.name)] = out.get(stage(r.name), 0.0) + r.macs
    return out


def sides(form: str, model, converted, x: torch.Tensor) -> dict:
    """The plain and the octave model in ``form``, ready to run on ``x``."""
    if form == "eager":
        return {"plain": octify.freeze(model), "octave": octify.freeze(converted, example_inputs=x)}
    if form == "compiled":
        return {"plain": compiled(octify.freeze(model), x), "octave": compiled(octify.freeze(converted, matmul_1x1=False), x)}
    calibration = [torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    return {"plain": int8(model, calibration), "octave": int8(for_int8(converted), calibration)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forms", nargs="+", choices=list(FORMS), default=DEFAULT[0])
    p.add_argument("--models", nargs="+", default=DEFAULT[1], help="every form's models (default: each form's own, see FORMS)")
    p.add_argument("--batches", nargs="+", type=int, default=DEFAULT[2])
    p.add_argument("--threads", type=int, default=DEFAULT[3])
    p.add_argument("--forwards", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    inductor_config.cpp.enable_kernel_profile = True  # generated kernels show up as profiler events, not as time outside kernels
    table = ResultTable("profile-ops", ["model", "batch", "form", "side", "forward ms", "operator calls", "convolutions ms",
                                        "matrix products ms", "generated kernels ms", "other kernels ms", "outside kernels ms", "MACs"],
                        "-:--::::::::")
    layers = ResultTable("profile-layers", ["model", "batch", "stage", "plain ms", "octave ms", "ratio", "MACs ratio"], "-:-::::")
    for form in args.forms:
        for name in args.models or FORMS[form]:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torchvision.models.get_model(name, weights=None).eval()
                x1 = torch.randn(1, 3, 224, 224)
                converted = octify.convert(model, alpha=0.5, example_inputs=x1).eval()
            base = octify.profile(model, x1).macs
            macs = {"plain": 1.0, "octave": octify.profile(converted, x1).macs / base}
            for batch in args.batches:
                x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
                side_models = sides(form, model, converted, x)
                got = {side: breakdown(m, x, args.forwards) for side, m in side_models.items()}
                if form == "eager":
                    by_stage = stage_times(side_models, x, args.forwards)
                    stage_mac = {"plain": stage_macs(model, x[:1]), "octave": stage_macs(converted, x[:1])}
                    for key in by_stage["plain"]:
                        t = {side: by_stage[side].get(key, 0.0) for side in by_stage}
                        m = {side: stage_mac[side].get(key, 0.0) for side in stage_mac}
                        layers.row(name, batch, key, f"{t['plain']:.1f}", f"{t['octave']:.1f}", f"{t['octave'] / t['plain']:.2f}",
                                   f"{m['octave'] / m['plain']:.2f}" if m["plain"] else "")
                for side, r in got.items():
                    table.row(name, batch, form, side, f"{r['ms']:.1f}", f"{r['calls']:.0f}", f"{r['conv']:.1f}", f"{r['mm']:.1f}",
                              f"{r['generated']:.1f}", f"{r['other']:.1f}", f"{r['host']:.1f}", f"{macs[side]:.2f}x")
                table.note(note(name, batch, form, got, macs["octave"], TARGETS.get((form, args.threads, batch))))
                torch._dynamo.reset()
    table.note(f"{args.threads} threads, float32 (int8: activations and weights), inference mode, 224x224, alpha 0.5; "
               f"{args.forwards} forwards profiled after 3 to warm up; forward ms is the median without the profiler.")
    layers.note(f"eager (octify.freeze of both), {args.threads} threads, 224x224, alpha 0.5: each stage's layers with weights of their "
                f"own (convs, octave convs, the classifier) timed by forward hooks, median of {args.forwards} forwards after 3, the two "
                f"sides alternated; "
                "'between layers' is the rest of the forward: activations, sums, pooling, the splits and merges of pairs.")
    default = (args.forms, args.models, args.batches, args.threads) == DEFAULT
    why = "" if default else "other forms, models, batches or threads than the default"
    table.save(unless=why)
    if "eager" in args.forms:
        layers.save(unless=why)


if __name__ == "__main__":
    main()
