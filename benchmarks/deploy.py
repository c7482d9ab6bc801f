"""Every deployment path of a converted model against eager mode: the largest relative difference.

For each model, the converted model (``octify.convert``, alpha 0.5, batch norms with random
statistics) and its frozen form (``octify.freeze``) go through ONNX (dynamo and legacy exporters,
run in onnxruntime), TorchScript (``torch.jit.trace``, and ``torch.jit.script``), a torch.export
ExportedProgram, ``torch.fx.symbolic_trace``, and autocast (bf16, fp16). The exported files are
written, loaded back and run on a batch of 3 (export used another batch: the batch is dynamic).
Each cell is max|path - eager| / max|eager|; autocast cells are against float32 eager, with the
original model's own autocast error (against its float32 output) in brackets.

    python benchmarks/deploy.py                          # resnet18, mobilenet_v3_small at 224x224
    python benchmarks/deploy.py --models resnet50 --size 160
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import octify  # noqa: E402
from result_table import ResultTable  # noqa: E402


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def _file_path(fmt: str, exporter: str = "dynamo") -> Callable[[nn.Module, torch.Tensor, torch.Tensor], float]:
    def run(model: nn.Module, x: torch.Tensor, x_run: torch.Tensor) -> float:
        with tempfile.TemporaryDirectory() as d:
            result = octify.export(
                model, os.path.join(d, {"onnx": "m.onnx", "torchscript": "m.pt"}.get(fmt, "m.pt2")), format=fmt, example_inputs=x_run, freeze=False, onnx_exporter=exporter
            )
        return result.rel_diff

    return run


def _in_process(make: Callable[[nn.Module, torch.Tensor], Callable]) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], float]:
    def run(model: nn.Module, x: torch.Tensor, x_run: torch.Tensor) -> float:
        with torch.no_grad():
            return _rel(make(model, x)(x_run), model(x_run))

    return run


PATHS: Dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "ONNX, dynamo exporter (onnxruntime)": _file_path("onnx", "dynamo"),
    "ONNX, legacy exporter (onnxruntime)": _file_path("onnx", "legacy"),
    "torch.export (.pt2 saved, reloaded)": _file_path("exported-program"),
    "torch.jit.trace (saved, reloaded)": _file_path("torchscript"),
    "torch.jit.script": _in_process(lambda m, x: torch.jit.script(m)),
    "torch.fx.symbolic_trace": _in_process(lambda m, x: torch.fx.symbolic_trace(m)),
}


def _autocast(dtype: torch.dtype) -> Callable[[nn.Module, nn.Module, torch.Tensor], str]:
    def run(model: nn.Module, original: nn.Module, x: torch.Tensor) -> str:
        with torch.no_grad():
            ref, base_ref = model(x), original(x)
            with torch.autocast("cpu", dtype=dtype):
                got, base = model(x), original(x)
        return f"{_rel(got.float(), ref):.1e} ({_rel(base.float(), base_ref):.1e})"

    return run


DEFAULT_MODELS = ["resnet18", "mobilenet_v3_small"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, float32, {args.size}x{args.size}")
    forms = [(m, f) for m in args.models for f in ("converted", "frozen", "frozen matmul_1x1")]
    models = {}
    for name in args.models:
        torch.manual_seed(0)
        original = _randomize_bn(torchvision.models.get_model(name, weights=None)).eval()
        x = torch.randn(2, 3, args.size, args.size)
        converted = octify.convert(original, alpha=0.5, example_inputs=x).eval()
        models[(name, "converted")] = (converted, original, x)
        models[(name, "frozen")] = (octify.freeze(converted), original, x)
        models[(name, "frozen matmul_1x1")] = (octify.freeze(converted, matmul_1x1=True), original, x)
    table = ResultTable("deploy-paths", ["path", *(f"{m} {f}" for m, f in forms)], "-" + ":" * len(forms))
    x_run = torch.randn(3, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    for label, run in PATHS.items():
        cells = []
        for key in forms:
            model, _, x = models[key]
            try:
                diff = run(copy.deepcopy(model), x, x_run)
                cells.append("0" if diff == 0 else f"{diff:.1e}")
            except Exception as e:  # a path that fails is a result too
                cells.append(f"fails: {type(e).__name__}")
        table.row(label, *cells)
    for label, dtype in (("autocast bf16 (the original's error)", torch.bfloat16), ("autocast fp16 (the original's error)", torch.float16)):
        table.row(label, *(_autocast(dtype)(models[k][0], models[k][1], x_run) for k in forms))
    table.note(f"max|path - eager| / max|eager| on a batch of 3, exported with batch 2; {args.size}x{args.size}, alpha 0.5, "
               "random batch-norm statistics; autocast against float32 eager.")
    table.save(unless="" if (args.models, args.size) == (DEFAULT_MODELS, 224) else "other models or size than the default")


if __name__ == "__main__":
    main()
