"""Octave models against their originals on a GPU: fp16 / bf16, channels-last, torch.compile, CUDA graphs.

Each row times the frozen octave model (``octify.freeze(octify.convert(m, alpha=0.5))``) against
the best plain configuration of the original (``octify.freeze(m)``: batch norms folded,
channels-last), both moved to the device in the row's dtype and run the row's way:

- ``eager``: the frozen modules as they are;
- ``cuda-graph``: each captured once in a CUDA graph (``torch.cuda.CUDAGraph``) and replayed, so
  that kernel launches cost nothing on the host -- the octave layers launch about three times as
  many kernels as the convs they replace, which at batch 1 is what an eager GPU run measures;
- ``compile``: ``torch.compile`` (inductor, default mode) with inductor freezing;
- ``compile+cuda-graph``: ``torch.compile(mode="reduce-overhead")`` (inductor's CUDA graphs) with freezing.

The 1x1 octave convs run as matrix products or as convolutions, whichever ``octify.freeze``
measures faster on the device, in the dtype, at the row's batch. Both sides run alternated in one
process, ``--reps`` forwards per sample between two synchronisations; the ratio is the median of
the per-pair ratios, measured twice (two columns). The table is saved as
``benchmarks/results/gpu.json`` when it ran on a GPU (``--device cpu`` checks the script on a
machine without one and saves nothing).

    python benchmarks/gpu.py                                      # resnet18 and resnet50, batch 1 / 32 / 128
    python benchmarks/gpu.py --models resnet50 --batches 1 --dtypes float16 --modes eager cuda-graph
    python benchmarks/gpu.py --device cpu --models resnet18 --batches 1 --dtypes float32 --modes eager --size 64
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import warnings
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from result_table import ResultTable  # noqa: E402
from timing import alternate  # noqa: E402

MODES = ("eager", "cuda-graph", "compile", "compile+cuda-graph")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def on_device(model: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """``model`` frozen on the device in ``dtype`` (folded in float32 first, so that the folding
    itself does not round to half precision), its 1x1 kernels chosen on ``x``."""
    folded = octify.freeze(copy.deepcopy(model).to(device), matmul_1x1=False).to(dtype)
    return octify.freeze(folded, example_inputs=x)


def runner(model: nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    """A no-argument call that runs ``model`` on ``x`` the row's way."""
    if mode == "eager":
        return lambda: model(x)
    if mode == "cuda-graph":
        static = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up outside the graph: cuDNN picks its algorithms here
                model(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(static)
        return graph.replay
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(model, mode="reduce-overhead" if mode == "compile+cuda-graph" else "default")
    for _ in range(3):
        compiled(x)
    return lambda: compiled(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32, 128])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float16", "bfloat16"])
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--reps", type=int, default=10, help="forwards per timed sample")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: expected a CUDA GPU, found none (torch {torch.__version__}); "
                "Hint: --device cpu checks the script without one")
    if device.type != "cuda" and any(m.endswith("cuda-graph") for m in args.modes):
        p.error(f"--modes {' '.join(args.modes)}: CUDA graphs need --device cuda, found --device {args.device}")
    torch.backends.cudnn.benchmark = True
    table = ResultTable("gpu", ["mode", "dtype", "model", "batch", "best plain ms", "octave ms", "ratio (run 1 / run 2)", "MACs ratio"],
                        "---:::::")
    ratios = []
    for name in args.models:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name, weights=None).eval()
            x1 = torch.randn(1, 3, args.size, args.size)
            converted = octify.convert(model, alpha=args.alpha, example_inputs=x1).eval()
        macs_ratio = octify.profile(converted, x1).macs / octify.profile(model, x1).macs
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            for batch in args.batches:
                x = torch.randn(batch, 3, args.size, args.size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    plain, octave = on_device(model, x, device, dtype), on_device(converted, x, device, dtype)
                    for mode in args.modes:
                        a, b = runner(plain, x, mode), runner(octave, x, mode)
                        runs = [alternate(a, b, args.iters, reps=args.reps, device=device) for _ in range(2)]
                        ratios.append(max(r[2] for r in runs))
                        table.row(mode, dtype_name, name, batch, f"{runs[0][0]:.2f}", f"{runs[0][1]:.2f}",
                                  f"**{runs[0][2]:.2f}** / **{runs[1][2]:.2f}**", f"{macs_ratio:.2f}")
                        del a, b
                        torch._dynamo.reset()
                del plain, octave, x
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    table.note(f"alpha {args.alpha:g}, {args.size}x{args.size}, {args.reps} forwards per sample, {args.iters} alternated samples; "
               f"geometric mean of the larger ratio of each row: {statistics.geometric_mean(ratios):.2f}, "
               f"octave faster in {sum(r < 1 for r in ratios)} of {len(ratios)} rows.")
    table.save(unless="" if device.type == "cuda" else f"ran on {device}, not a GPU")


if __name__ == "__main__":
    main()
