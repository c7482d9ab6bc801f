"""What the commands do, over the library: load the model, convert, save, check, report.

The typer declarations in :mod:`.app` only parse options into typed values and call these.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from dataclasses import replace
from typing import Any, List, Optional, Tuple

import torch
from rich.markup import escape

from ..convert import convert as convert_model
from ..errors import first_line
from ..io import load, save
from ..record import record_of, recorded_inputs
from ..report import compare, profile
from ..nn import OctConvTranspose2d
from ..nn.octconv import OctConvNd
from ..report._format import calibration_text, fidelity_text, latency_plan_text, reconstruction_text
from ..report._tables import record_summary
from ..tune.fidelity import fidelity
from ..utils.formatting import nbytes, si
from ..utils.formatting import shape as shape_text
from ..utils.inputs import default_shape
from . import loading
from .saved import load_model
from .console import UI, CLIError, one_line, usage, write_json
from .data import ImagePrep, load_dataset
from .options import Shape, check_writable
from .weights import load_weights

__all__ = ["run_convert", "run_report", "load_user_model", "headline", "image_prep", "example_input", "check_saved_suffix", "load_text", "RANDOM_WEIGHTS"]

def _random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen)


def _check_takes(model: torch.nn.Module, x: torch.Tensor, given: bool) -> None:
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:
        convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        expects = f" (its first {type(convs[0]).__name__} takes {convs[0].in_channels} channels)" if convs else ""
        how = "" if given else " (the default)"
        if convs and x.dim() != len(convs[0].kernel_size) + 2:
            dims = len(convs[0].kernel_size)
            layout = "N,C," + {1: "L", 2: "H,W", 3: "D,H,W"}.get(dims, ",".join("S" * dims))
            raise usage(
                f"--input-shape {','.join(map(str, x.shape))}{how} has {x.dim()} dimensions: the model's first "
                f"{type(convs[0]).__name__} takes {dims + 2} ({layout}). Hint: pass --input-shape {layout}, e.g. "
                f"{','.join(['1', str(convs[0].in_channels)] + ['224' if dims == 2 else '32'] * dims)}."
            ) from e
        raise usage(
            f"the model cannot take an input of shape {shape_text(tuple(x.shape))}{how}: "
            f"{loading.describe_exception(e)}. Hint: pass --input-shape N,C,H,W that the model accepts{expects}."
        ) from e


def _leaf_specs(model: torch.nn.Module, leaves: List[str]) -> tuple:
    classes = {type(m).__name__: type(m) for m in model.modules()}
    return tuple(classes.get(spec, spec) for spec in leaves)


def _same_outputs(a: Any, b: Any) -> Optional[str]:
    """None when identical (NaN equal to NaN), else a description of the difference."""
    try:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    except AssertionError as e:
        return one_line(str(e))[:300]
    return None


def load_user_model(ui: UI, spec: str, weights: Optional[str], model_args: Optional[dict] = None, trusted: bool = False) -> loading.LoadedModel:
    with ui.step(f"Loading {spec}"):
        loaded = load_model(spec, model_args, trusted=trusted)
        if weights is not None:
            with ui.step(f"Loading weights {weights}"):
                loaded.source += f", weights from {load_weights(loaded.model, weights)}"
            loaded.random_weights = False
        loaded.model.eval()
    params = sum(p.numel() for p in loaded.model.parameters())
    random = " [yellow](its constructor's random weights)[/]" if loaded.random_weights else ""
    ui.say(f"Loaded [bold]{escape(loaded.source)}[/]{random}: {si(params)} parameters, {_conv_counts(loaded.model)}")
    return loaded


RANDOM_WEIGHTS = "MODEL has the random weights its constructor drew (no --weights given)"


def _conv_counts(model: torch.nn.Module) -> str:
    """'53 Conv2d layers', or for a converted model '45 OctConv2d and 8 Conv2d layers' (the convs
    inside an octave layer are its parts, not layers of the model)."""
    counts: dict = {}
    inside: set = set()
    for m in model.modules():
        if id(m) in inside:
            continue
        octave = isinstance(m, (OctConvNd, OctConvTranspose2d))
        if octave:
            inside.update(id(c) for c in m.modules() if c is not m)
        if octave or isinstance(m, torch.nn.modules.conv._ConvNd):
            counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    if not counts:
        return "no conv layer"
    parts = [f"{n} {name}" for name, n in sorted(counts.items(), key=lambda kv: (not kv[0].startswith("Oct"), kv[0]))]
    return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts) + f" layer{'s' * (sum(counts.values()) != 1)}"


def example_input(ui: UI, model: torch.nn.Module, input_shape: Optional[Shape]) -> torch.Tensor:
    recorded = recorded_inputs(model) if input_shape is None else None
    if recorded is not None and len(recorded) == 1:  # a converted model: the shape it was converted on
        shape = tuple(recorded[0].shape)
        ui.say(f"Input shape {shape_text(shape)}, the one the model was converted on (--input-shape to change it)")
    else:
        shape = input_shape.dims if input_shape is not None else default_shape(model)
    x = _random_input(shape, seed=0)
    with ui.step(f"Running the model on a random {shape_text(shape)} input"):
        _check_takes(model, x, given=input_shape is not None)
    return x


def run_convert(
    ui: UI,
    *,
    spec: str,
    model_args: Optional[dict] = None,
    alpha: float,
    octave: int,
    input_shape: Optional[Shape],
    stride_mode: str,
    min_size: int,
    policy: str,
    exclude: tuple,
    alpha_for: Optional[dict],
    leaf: List[str],
    weights: Optional[str],
    output: Optional[str],
    json_out: Optional[str],
    latency: bool,
    verify: bool,
    calibration: Optional[str] = None,
    fidelity_data: Optional[str] = None,
    data_samples: int = 512,
    runs: int = 20,
    threads: Optional[int] = None,
    layers: bool = False,
    html: Optional[str] = None,
    resize: Optional[int] = None,
    normalize: Any = None,
    reconstruct_data: Optional[str] = None,
    latency_budget: Optional[float] = None,
    fidelity_budget: Optional[float] = None,
    trusted: bool = False,
) -> None:
    if output is not None:
        check_writable(Path(output), "the converted model")
        check_saved_suffix(output, "-o")
    _check_report_paths(json_out, html)

    loaded = load_user_model(ui, spec, weights, model_args, trusted)
    original = loaded.model
    if loaded.random_weights:
        ui.note(f"{RANDOM_WEIGHTS}: the conversion and its report are right, but neither model has learned anything. "
                "Hint: --weights CKPT converts your trained weights.")
    out_path = Path(output) if output is not None else Path.cwd() / f"{loaded.name}_oct.safetensors"
    if output is None:
        check_writable(out_path, "the converted model")
    x = example_input(ui, original, input_shape)
    fidelity_batches = None
    if fidelity_data is not None:  # read before converting: a mistake there is told before any work
        with ui.step(f"Loading the fidelity data {fidelity_data}"):
            fidelity_batches, described = _samples(fidelity_data, image_prep(x, resize, normalize), data_samples, "--fidelity")
        ui.say(f"Fidelity data: {escape(described)}")
    fit_batches = None
    if reconstruct_data is not None:
        with ui.step(f"Loading the reconstruction data {reconstruct_data}"):
            fit_batches, described = _samples(reconstruct_data, image_prep(x, resize, normalize), data_samples, "--reconstruct")
        ui.say(f"Reconstruction data: {escape(described)}")

    record = None
    n_convs = sum(isinstance(m, torch.nn.modules.conv._ConvNd) for m in original.modules())
    if n_convs == 0:
        ui.say("[bold]Nothing changed[/]: the model has no conv layer, so there is nothing to convert; the saved model is the original.")
        converted = original
    else:
        kwargs = dict(
            example_inputs=x,
            octave=octave,
            stride_mode=stride_mode,
            min_size=min_size,
            policy=policy,
            latency_budget=latency_budget,
            fidelity_budget=fidelity_budget,
            exclude=exclude,
            alpha_for=alpha_for,
            leaf_modules=_leaf_specs(original, leaf),
            verify=verify,
        )
        prep = image_prep(x, resize, normalize)
        if calibration is not None:
            with ui.step(f"Loading the calibration data {calibration}"):
                batches, described = _samples(calibration, prep, data_samples, "--calibration")
                kwargs["calibration"] = [inputs for inputs, _ in batches]
            ui.say(f"Calibration data: {escape(described)}")
        if fit_batches is not None:
            kwargs["reconstruct"] = [inputs for inputs, _ in fit_batches]
        with ui.step(f"Converting at alpha={alpha:g}: tracing, rewriting, transferring weights" + (", verifying" if verify else "")
                     + (", fitting each octave layer to the original's" if fit_batches is not None else "")) as advance:
            if policy == "latency":
                kwargs["progress"] = advance
            # The headline says it (a filter of this step's own warnings context: ui.step restores them).
            warnings.filterwarnings("ignore", message="octify: none of the")
            threads_before = torch.get_num_threads()
            if threads is not None and policy == "latency":  # the plan is timed at the threads it will run on
                torch.set_num_threads(threads)
            try:
                converted = convert_model(original, alpha, **kwargs)
            finally:
                torch.set_num_threads(threads_before)
        converted.eval()
        if not verify:  # unverified: written only if it runs on the example input for real
            with ui.step("Running the converted model on the example input"):
                try:
                    with torch.no_grad():
                        converted(x)
                except Exception as e:
                    raise CLIError(
                        f"the converted model does not run on the example input {'x'.join(map(str, x.shape))}: {first_line(e)}; "
                        "nothing was written. Hint: keep the part that fails plain with --exclude GLOB or --leaf GLOB."
                    ) from e
        try:
            record = record_of(converted)
        except ValueError:
            record = None
        if record is not None:
            record.random_weights = loaded.random_weights  # saved with it: export, report and finetune tell
            ui.say(headline(record))

    with ui.step(f"Saving to {out_path}"):
        try:
            save(converted, out_path, spec=spec, model_args=model_args)
        except OSError as e:
            raise CLIError(f"cannot write the converted model to {out_path}: {e.strerror or e}. Hint: choose another path with -o.") from e
    if verify:
        with ui.step(f"Checking that {out_path.name} reloads with identical outputs"):
            _check_reload(converted, original, out_path, tuple(x.shape))

    with ui.step("Profiling the original and the converted model" + (", timing both" if latency else "")):
        comparison = compare(original, converted, x, latency=latency, runs=runs, threads=threads)
    measured = None
    if fidelity_batches is not None:
        with ui.step(f"Measuring fidelity to the original on {fidelity_data}"):
            measured = fidelity(original, converted, fidelity_batches)

    if json_out != "-":  # with JSON on stdout, the JSON is the report
        ui.out.print(comparison)
        if layers:
            ui.out.print(comparison.layer_table())
        if record is not None:
            ui.out.print(record_summary(record, full=layers))
        if record is not None and record.calibration:
            ui.say(escape(calibration_text(record.calibration, sum(len(b) for b in kwargs["calibration"]))))
        if record is not None and record.reconstruction:
            ui.say(escape(reconstruction_text(record.reconstruction)))
        if record is not None and record.latency_plan:
            ui.say(escape(latency_plan_text(record.latency_plan)))
        if measured is not None:
            ui.say(escape(fidelity_text(measured)))
    _warn_if_busy(ui, comparison.before.latency, comparison.after.latency)
    if html is not None:
        _write_html(ui, comparison.to_html(record, fidelity=measured), html)
    ui.say(
        f"Saved [cyan]{escape(str(out_path))}[/] ({nbytes(out_path.stat().st_size)})"
        + ("; reloading it gives the converted model's outputs bit for bit" if verify else "")
        + f". {escape(load_text(out_path, spec, original, model_args))}"
    )
    if json_out is not None:
        data = comparison.to_dict()
        if isinstance(data, dict):
            data.setdefault("source", loaded.source)
            data.setdefault("input_shape", list(x.shape))
            data.setdefault("output", str(out_path))
            if record is not None:
                data.setdefault("conversion", record.to_dict())
            if measured is not None:
                data["fidelity"] = measured
        write_json(ui, data, json_out)
    if record is not None and record.converted and json_out != "-":
        measure = "" if measured is not None else "measure how close it is (--fidelity DATA), "
        ui.say(
            f"[dim]Next: the converted model is not the original; {measure}"
            "win accuracy back (octify finetune), deploy it (octify export). Docs: getting-started.md, What next.[/]"
        )


def headline(record: Any) -> str:
    """The line that says what the conversion changed, or that it changed nothing and why."""
    n, total = len(record.converted), len(record.convs)
    if n:
        return (
            f"Converted [bold]{n}[/] of {total} convs to octave convs at alpha={record.alpha:g} "
            f"(octave {record.octave}, stride mode {record.stride_mode}); {total - n} left plain, "
            f"{record.count('merge')} merge{'s' * (record.count('merge') != 1)} and "
            f"{record.count('split')} split{'s' * (record.count('split') != 1)} inserted"
        )
    return (
        f"[bold]Nothing changed[/]: {escape(record.nothing_converted() or 'the model has no conv octify converts')}. "
        "The saved model computes what the original does, with no saving."
    )


def _check_report_paths(json_out: Optional[str], html: Optional[str]) -> None:
    if json_out not in (None, "-"):
        check_writable(Path(json_out), "the JSON report")
    if html is not None:
        check_writable(Path(html), "the HTML report")


def _write_html(ui: UI, page: str, target: str) -> None:
    path = Path(target)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise CLIError(f"cannot write the HTML report to {path}: {e.strerror or e}.") from e
    ui.say(f"Wrote the HTML report to [cyan]{escape(str(path))}[/] (self-contained: open it in any browser)")


def _warn_if_busy(ui: UI, *latencies: Any) -> None:
    for lat in latencies:
        if lat is not None and lat.busy:
            ui.warn(lat.warning())
            return


def image_prep(x: torch.Tensor, resize: Optional[int], normalize: Any) -> ImagePrep:
    """How image files become inputs of the example's size (``--resize``, ``--normalize``)."""
    prep = ImagePrep(size=tuple(x.shape[-2:]), resize=resize)
    return prep if normalize is None else replace(prep, mean=normalize.mean, std=normalize.std)


def _samples(spec: str, prep: ImagePrep, n: int, option: str) -> Tuple[List[Any], str]:
    """Up to ``n`` samples of the dataset ``spec`` (a seeded random choice), as a list of
    (inputs, labels or None) batches of 64, and the data described."""
    dataset, described = load_dataset(spec, prep, option)
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n].tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, pick), batch_size=64)
    batches = [tuple(b) if isinstance(b, (list, tuple)) else (b, None) for b in loader]
    return batches, f"{described}; {len(pick)} of them used (--data-samples)" if len(pick) < len(dataset) else described


def check_saved_suffix(path: str, option: str) -> None:
    """A model is written as .safetensors (weights and a recipe; no pickle): a usage error for another name."""
    if Path(path).suffix.lower() != ".safetensors":
        raise usage(f"{option} {path}: octify writes models as .safetensors files (the weights and a recipe to rebuild the model, "
                    f"no pickle): expected a path ending .safetensors, found {Path(path).suffix or 'no suffix'}. "
                    f"Hint: {option} {Path(path).with_suffix('.safetensors')}")


def load_text(path: Path, spec: str, original: torch.nn.Module, model_args: Optional[dict] = None) -> str:
    """How to load the file written in Python: octify.load builds torchvision and timm originals
    itself; others are given (the command line rebuilds them all from the recorded spec)."""
    kind, _, _ = loading.split_spec(spec)
    if kind == "zoo":
        return f"Load it with octify.load({str(path)!r})."
    call = f"{type(original).__name__}({', '.join(f'{k}={v!r}' for k, v in (model_args or {}).items())})"
    return f"Load it with octify.load({str(path)!r}, model={call}) (the original, as {spec} builds it), or give it as MODEL to octify commands."


def _check_reload(model: torch.nn.Module, original: torch.nn.Module, path: Path, shape: tuple) -> None:
    try:
        reloaded = load(path, model=original)
    except Exception as e:
        raise CLIError(f"the saved model {path} does not load back: {loading.describe_exception(e)}") from e
    x = _random_input(shape, seed=1)
    with torch.no_grad():
        want, got = model(x), reloaded(x)
    diff = _same_outputs(got, want)
    if diff is not None:
        raise CLIError(f"the model reloaded from {path} gives different outputs from the converted one: {diff}")


def run_report(
    ui: UI, *, spec: str, input_shape: Optional[Shape], weights: Optional[str], json_out: Optional[str], latency: bool,
    runs: int = 20, threads: Optional[int] = None, layers: bool = False, html: Optional[str] = None, model_args: Optional[dict] = None,
    trusted: bool = False,
) -> None:
    _check_report_paths(json_out, html)
    loaded = load_user_model(ui, spec, weights, model_args, trusted)
    x = example_input(ui, loaded.model, input_shape)
    with ui.step("Profiling" + (" and timing" if latency else "")):
        prof = profile(loaded.model, x, latency=latency, runs=runs, threads=threads)
    if json_out != "-":
        ui.out.print(prof)
        if layers:
            ui.out.print(prof.layer_table())
    _warn_if_busy(ui, prof.latency)
    if html is not None:
        _write_html(ui, prof.to_html(), html)
    if json_out is not None:
        data = prof.to_dict()
        data.setdefault("source", loaded.source)
        data.setdefault("input_shape", list(x.shape))
        write_json(ui, data, json_out)
