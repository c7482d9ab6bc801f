"""export(): a converted model written in a deployment format, loaded back and checked.

Three formats, each written with PyTorch's own exporter and reloaded with the runtime that will
run it, so that the difference printed is the one a deployment sees:

- ``"onnx"``: ``torch.onnx.export`` (the dynamo exporter by default, the TorchScript-based one
  with ``onnx_exporter="legacy"``), rerun in onnxruntime (``pip install 'octify[export]'``);
- ``"torchscript"``: ``torch.jit.trace`` with its checks, rerun after ``torch.jit.load``;
- ``"exported-program"``: ``torch.export.export``, rerun after ``torch.export.load``.

The batch dimension of every input is dynamic. By default the model is frozen first
(``octify.freeze``: batch norms folded, weights laid out once), the form to deploy.
"""

from __future__ import annotations

import copy
import importlib
import warnings
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple, Union

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from .errors import ExportError, MissingDependency, OptionError, OptionTypeError
from .fx.freeze import freeze as freeze_model
from .record import recorded_inputs
from .utils.choices import EXPORT_FORMATS, ONNX_EXPORTERS
from .utils.inputs import default_inputs, normalize_inputs
from .utils.validate import check_choice, check_module

__all__ = ["export", "ExportResult", "EXPORT_FORMATS", "ONNX_EXPORTERS"]

_ONNX_NEEDS = {"dynamo": ("onnx", "onnxscript", "onnxruntime"), "legacy": ("onnx", "onnxruntime")}


@dataclass
class ExportResult:
    """What ``export`` wrote and how close the reloaded file came to the model."""

    path: Path
    format: str
    runtime: str  # what reran the file
    input_shapes: List[Tuple[int, ...]]
    max_abs_diff: float  # the largest |exported - model| over every output element
    rel_diff: float  # that, over the largest |model output|
    frozen: bool
    input_names: List[str] = field(default_factory=list)  # ONNX: what to feed the file's inputs by
    output_names: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path), "format": self.format, "runtime": self.runtime,
            "input_shapes": [list(s) for s in self.input_shapes], "max_abs_diff": self.max_abs_diff,
            "rel_diff": self.rel_diff, "frozen": self.frozen, "input_names": list(self.input_names),
            "output_names": list(self.output_names),
        }


def _require(modules: Sequence[str], what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed. "
            "Hint: pip install 'octify[export]'"
        )


def _example(model: nn.Module, example_inputs: Any) -> Tuple[Tensor, ...]:
    if example_inputs is not None:
        inputs = normalize_inputs(example_inputs, "octify.export")
    else:
        inputs = recorded_inputs(model) or default_inputs(model)
    if not inputs or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in inputs):
        found = ", ".join(type(t).__name__ for t in inputs) or "nothing"
        raise OptionTypeError(f"octify.export: expected example_inputs of one or more Tensors with a batch dimension, found {found}")
    return inputs


def _batched(inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
    """Inputs with a batch of at least 2: torch.export specialises a dimension of size 1."""
    return tuple(torch.cat([t, t]) if t.shape[0] == 1 else t for t in inputs)


def _leaves(value: Any) -> List[Tensor]:
    return [t for t in pytree.tree_leaves(value) if isinstance(t, Tensor)]


def _names(given: Sequence[str], prefix: str, n: int, what: str) -> List[str]:
    """``given`` names, or ``prefix_0 ...``; a count that does not fit is refused."""
    if not given:
        return [f"{prefix}_{i}" for i in range(n)]
    if len(given) != n or len(set(given)) != n:
        raise OptionError(f"octify.export: expected {n} distinct {what} names (the model has {n} {what}{'s' * (n != 1)}), found {list(given)}")
    return list(given)


def _write_onnx(
    model: nn.Module, inputs: Tuple[Tensor, ...], path: Path, exporter: str, input_names: Sequence[str], output_names: Sequence[str],
) -> Tuple[Callable[..., List[Tensor]], List[str], List[str]]:
    import onnxruntime as ort

    names = _names(input_names, "input", len(inputs), "input")
    with torch.no_grad():
        outputs = _names(output_names, "output", len(_leaves(model(*inputs))), "output")
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(
            model, inputs, dynamo=True, input_names=names, output_names=outputs, dynamic_shapes=[{0: batch} for _ in inputs],
            verbose=False,
        )
        program.save(str(path))
    else:
        # Output names are required here: without them the legacy exporter takes a GraphModule's
        # torch.fx graph for a TorchScript one and fails on it.
        torch.onnx.export(
            model, inputs, str(path), dynamo=False, input_names=names, output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in names + outputs},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = [i.name for i in session.get_inputs()]

    def run(*xs: Tensor) -> List[Tensor]:
        return [torch.from_numpy(a) for a in session.run(None, {n: x.numpy() for n, x in zip(feed, xs)})]

    return run, feed, [o.name for o in session.get_outputs()]


def _write_torchscript(model: nn.Module, inputs: Tuple[Tensor, ...], path: Path) -> Callable[..., List[Tensor]]:
    with torch.no_grad():
        traced = torch.jit.trace(model, inputs, check_trace=True)
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    return lambda *xs: _leaves(loaded(*xs))


def _write_program(model: nn.Module, inputs: Tuple[Tensor, ...], path: Path) -> Callable[..., List[Tensor]]:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, inputs, dynamic_shapes=tuple({0: batch} for _ in inputs))
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    return lambda *xs: _leaves(loaded(*xs))


def export(
    model: nn.Module,
    path: Union[str, "Path"],
    *,
    format: str = "onnx",
    example_inputs: Any = None,
    freeze: bool = True,
    onnx_exporter: str = "dynamo",
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
) -> ExportResult:
    """Write ``model`` to ``path`` in ``format``, load the file back, run it on ``example_inputs``
    and return how far its outputs are from the model's (see the module docstring).

    ``example_inputs``: a Tensor or a tuple of Tensors, each with a (dynamic) batch dimension; by
    default random inputs of the shapes the model was converted on. With ``freeze=True`` the
    model is exported as ``octify.freeze`` makes it, and the difference includes the folding's
    rounding. ``model`` itself is not changed. ONNX files name their inputs ``input_0, ...`` and
    outputs ``output_0, ...`` unless ``input_names`` / ``output_names`` say otherwise; the result
    has the names the file has.

    >>> import torch, torchvision, octify, tempfile, os
    >>> net = octify.convert(torchvision.models.resnet18(), example_inputs=torch.randn(1, 3, 64, 64))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     result = octify.export(net, os.path.join(folder, "resnet18_oct.pt2"), format="exported-program")
    >>> result.input_shapes, result.rel_diff < 1e-4
    ([(1, 3, 64, 64)], True)
    """
    check_module(model, "octify.export: model")
    check_choice(format, "octify.export: format", EXPORT_FORMATS)
    check_choice(onnx_exporter, "octify.export: onnx_exporter", ONNX_EXPORTERS)
    if format == "onnx":
        _require(_ONNX_NEEDS[onnx_exporter], f"exporting to ONNX with the {onnx_exporter} exporter")
    inputs = _example(model, example_inputs)
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        want = _leaves(reference(*inputs))
    target = freeze_model(reference) if freeze else reference
    path = Path(path)
    if format == "exported-program" and path.suffix != ".pt2":
        raise OptionError(f"octify.export: an ExportedProgram file must end in .pt2 (torch.export.load reads only those), found {str(path)!r}")
    with warnings.catch_warnings():
        # The file is run and compared below, which is the check that matters: the exporters'
        # own notices (TorchScript's deprecation, tracer warnings on shape checks) are noise here.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*is deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"No complete tensor found.*")
        return _export_checked(target, path, format, inputs, want, onnx_exporter, freeze, input_names, output_names)


def _export_checked(
    target: nn.Module, path: Path, format: str, inputs: Tuple[Tensor, ...], want: List[Tensor], onnx_exporter: str, freeze: bool,
    input_names: Sequence[str], output_names: Sequence[str],
) -> ExportResult:
    in_names: List[str] = []
    out_names: List[str] = []
    if format == "onnx":  # checked before the long steps: a wrong count is the caller's mistake
        _names(input_names, "input", len(inputs), "input")
        _names(output_names, "output", len(want), "output")
    try:
        if format == "onnx":
            run, in_names, out_names = _write_onnx(target, _batched(inputs), path, onnx_exporter, input_names, output_names)
            runtime = "onnxruntime " + importlib.import_module("onnxruntime").__version__
        elif format == "torchscript":
            run = _write_torchscript(target, inputs, path)
            runtime = "torch.jit.load"
        else:
            run = _write_program(target, _batched(inputs), path)
            runtime = "torch.export.load"
        with torch.no_grad():
            got = run(*inputs)
    except (MissingDependency, OSError):
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(
            f"exporting to {format} failed: {type(e).__name__}: {first}. "
            "Hint: rerun with freeze=False (--no-freeze) to tell the frozen form from the converted one, "
            "or try another format."
        ) from e
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        raise ExportError(
            f"the exported {format} file returns outputs of shapes {[list(g.shape) for g in got]}, "
            f"the model {[list(w.shape) for w in want]}"
        )
    diff = max((float((g.double() - w.double()).abs().max()) for g, w in zip(got, want) if w.numel()), default=0.0)
    scale = max((float(w.double().abs().max()) for w in want if w.numel()), default=0.0)
    return ExportResult(
        path=path, format=format, runtime=runtime, input_shapes=[tuple(t.shape) for t in inputs],
        max_abs_diff=diff, rel_diff=diff / scale if scale > 0 else diff, frozen=freeze, input_names=in_names,
        output_names=out_names,
    )
