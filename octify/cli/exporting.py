"""``octify export``: a model (converted by octify, or any) to ONNX, TorchScript or a torch.export
program, rerun in its runtime against eager, with the names of its inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from rich.markup import escape

from ..export import export as export_model
from ..record import find_record, recorded_inputs
from ..utils.formatting import nbytes
from ..utils.formatting import shape as shape_text
from .commands import RANDOM_WEIGHTS, example_input, load_user_model
from .console import UI, write_json
from .options import Shape, check_writable

__all__ = ["run_export", "EXPORT_SUFFIXES"]

# The default output file of ``octify export`` per format.
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}


def run_export(
    ui: UI, *, spec: str, format: str, output: Optional[str], input_shape: Optional[Shape], freeze: bool,
    onnx_exporter: str, json_out: Optional[str], model_args: Optional[dict] = None,
    input_names: Sequence[str] = (), output_names: Sequence[str] = (), trusted: bool = False,
) -> None:
    if output is not None:
        check_writable(Path(output), "the exported model")
    if json_out not in (None, "-"):
        check_writable(Path(json_out), "the JSON report")
    loaded = load_user_model(ui, spec, None, model_args, trusted)
    if find_record(loaded.model) is None:
        ui.note("MODEL is not a model converted by octify: it is exported as it is. Hint: octify convert MODEL first, "
                "then export the file it writes.")
    if loaded.random_weights:
        ui.note(f"{RANDOM_WEIGHTS}: the file computes nothing useful. Hint: export the model octify convert --weights CKPT wrote.")
    saved = Path(spec).suffix in (".safetensors", ".pt", ".pth")
    stem = Path(spec).stem if saved else loaded.name  # resnet50_oct.safetensors -> resnet50_oct.onnx
    out_path = Path(output) if output is not None else Path.cwd() / f"{stem}{EXPORT_SUFFIXES[format]}"
    if output is None:
        check_writable(out_path, "the exported model")
    recorded = recorded_inputs(loaded.model) if input_shape is None else None
    x: Any = recorded if recorded is not None else example_input(ui, loaded.model, input_shape)
    how = f"the {onnx_exporter} exporter" if format == "onnx" else {"torchscript": "torch.jit.trace", "exported-program": "torch.export"}[format]
    what = "frozen " if freeze else ""
    with ui.step(f"Exporting the {what}model to {format} with {how}, then running the file"):
        result = export_model(loaded.model, out_path, format=format, example_inputs=x, freeze=freeze, onnx_exporter=onnx_exporter,
                              input_names=input_names, output_names=output_names)
    shapes_text = ", ".join(shape_text(s) for s in result.input_shapes)
    if json_out != "-":
        ui.say(
            f"Exported [cyan]{escape(str(out_path))}[/] ({nbytes(out_path.stat().st_size)}): {format} via {how}, "
            + ("the frozen model (batch norms folded), " if freeze else "the model as saved (--no-freeze), ")
            + "dynamic batch"
        )
        ui.say(
            f"Reran it with {result.runtime} on a random {shapes_text} input: largest difference from the model "
            f"[bold]{result.max_abs_diff:.2e}[/] (relative {result.rel_diff:.2e})"
        )
        if result.input_names:
            ui.say(f"Inputs: {', '.join(f'{n} ({shape_text(s)}, any batch)' for n, s in zip(result.input_names, result.input_shapes))}; "
                   f"outputs: {', '.join(result.output_names)} (--input-name, --output-name set them)")
    if json_out is not None:
        data = result.to_dict()
        data["source"] = loaded.source
        write_json(ui, data, json_out)
