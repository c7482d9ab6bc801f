"""The ``octify`` command line: a thin typer + rich layer over octify.convert / profile / compare.

Every domain error is caught once, at the command boundary (:meth:`_UI.boundary`), and becomes
one line on stderr and an exit code: 2 when the command line asks for something that cannot be
used (a missing file, a malformed option, a model that does not build without arguments, an
input shape the model cannot take), 1 when a step fails (the model file raises, torch.fx cannot
trace it, the output cannot be written). ``--debug`` adds the Python traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Any, Iterator, List, Optional

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import octify

from . import _load
from ._errors import ConversionError

__all__ = ["app", "main"]


class CLIError(Exception):
    """A message for the user and the exit code to leave with (2: usage, 1: failure)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _usage(message: str) -> CLIError:
    return CLIError(message, 2)


# --------------------------------------------------------------------------- help texts

_APP_HELP = """Turn a PyTorch CNN into an Octave-Convolution network (Chen et al., "Drop an Octave",
arXiv 1904.05049), with its weights, and report what it saves.

[b]MODEL[/b] is [cyan]path/to/file.py[/] (its build_model()/get_model()/create_model(), else a
module-level `model`, else the one nn.Module class that builds without arguments),
[cyan]file.py:NAME[/] (a class, factory or instance), [cyan]torchvision:NAME[/] (weights=None),
or a model saved whole as [cyan]file.pt[/].
"""

_APP_EPILOG = """[b]Examples[/b]

  octify convert torchvision:resnet50 --alpha 0.5 -o resnet50_oct.pt

  octify convert examples/custom_cnn.py --input-shape 1,3,64,64 --json report.json

  octify report torchvision:resnet18 --input-shape 1,3,224,224 --latency
"""

_CONVERT_EPILOG = """[b]Examples[/b]

  octify convert torchvision:resnet50                     [dim]# alpha 0.5, writes resnet50_oct.pt[/]

  octify convert examples/model.py --alpha 0.25 --exclude 'layer4.*' -o oct.pt

  octify convert examples/custom_cnn.py:CustomCNN -i 1,3,64,64 --alpha-for 'head.*=0'

  octify convert net.py --weights ckpt.pth --json - > comparison.json

Load the result with octify.load(PATH), or torch.load(PATH, weights_only=False) with octify installed.
"""

_REPORT_EPILOG = """[b]Examples[/b]

  octify report torchvision:resnet50

  octify report examples/custom_cnn.py -i 1,3,64,64 --json -

  octify report resnet50_oct.pt --latency          [dim]# a converted model saved by octify convert[/]
"""

_MODEL_HELP = "path/to/file.py, file.py:NAME, torchvision:NAME, or a saved model file.pt."
_SHAPE_HELP = (
    "Shape of the random example input, N,C,H,W. \\[default: 1,C,224,224, C from the first Conv2d]"
)

app = typer.Typer(
    name="octify",
    help=_APP_HELP,
    epilog=_APP_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"octify {octify.__version__} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", help="Show the version and exit.", callback=_version_callback, is_eager=True),
    ] = None,
) -> None:
    """Turn a PyTorch CNN into an Octave-Convolution network."""


# --------------------------------------------------------------------------- output and errors


class _UI:
    """The two consoles (report: stdout, or stderr when JSON goes to stdout; errors: stderr),
    the transient progress display, and the error boundary."""

    def __init__(self, *, json_to_stdout: bool = False, quiet: bool = False, debug: bool = False) -> None:
        self.out = Console(stderr=json_to_stdout, quiet=quiet, highlight=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.debug = debug
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.out,
            transient=True,
            disable=quiet or not self.out.is_terminal,
        )

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[None]:
        """A long step: a spinner while it runs (on a terminal), its warnings printed after it as notes."""
        task = self.progress.add_task(escape(description), total=None)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        finally:
            self.progress.remove_task(task)
        seen = set()
        for w in caught:
            text = _one_line(str(w.message))
            if text not in seen:
                seen.add(text)
                self.out.print(f"[yellow]warning:[/] {escape(text)}")

    def say(self, text: str) -> None:
        self.out.print(text)

    def note(self, text: str) -> None:
        self.out.print(f"[yellow]note:[/] {escape(text)}")

    @contextlib.contextmanager
    def boundary(self) -> Iterator[None]:
        """Run a command: domain errors become one line on stderr and an exit code."""
        try:
            with self.progress:
                yield
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            self.err.print("[red]octify: interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:  # the one place errors are turned into messages
            code, message = _describe(e)
            if self.debug:
                sys.stderr.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
            self.err.print(f"[bold red]octify: error:[/] {escape(message)}")
            raise typer.Exit(code) from None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe(e: BaseException) -> tuple[int, str]:
    if isinstance(e, CLIError):
        return e.exit_code, _one_line(str(e))
    if isinstance(e, _load.LoadError):
        return e.exit_code, _one_line(str(e))
    if isinstance(e, ConversionError):
        msg = _one_line(str(e))
        if "leaf_modules" in msg:
            msg += " On the command line: --leaf GLOB (a qualified module name glob, or a class name)."
        elif "Hint" not in msg:
            msg += " Hint: keep the part torch.fx cannot trace whole with --leaf GLOB; its convs then stay plain."
        return 1, msg
    if isinstance(e, OSError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return 1, f"{where}{e.strerror or e}"
    text = _one_line(str(e))
    return 1, f"unexpected {type(e).__name__}: {text} (rerun with --debug for the traceback)"


# --------------------------------------------------------------------------- option parsing


def _parse_alpha(text: str, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise _usage(f"{what} '{text}' is not a number: expected a fraction in [0, 1], e.g. 0.5 or 0.125.") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _usage(
            f"{what} {text} is outside [0, 1]: expected the fraction of channels in the low-frequency branch, "
            f"e.g. 0.5 (0 keeps a layer plain)."
        )
    return value


def _parse_int(text: str, what: str, minimum: int, example: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise _usage(f"{what} '{text}' is not an integer: expected {example}.") from None
    if value < minimum:
        raise _usage(f"{what} {value} is too small: expected {example}.")
    return value


def _parse_shape(text: str) -> tuple[int, ...]:
    """``1,3,224,224`` (also ``1x3x224x224``, ``(1, 3, 224, 224)``)."""
    body = text.strip().strip("()[]")
    parts = [p for p in re.split(r"[,xX\s]+", body) if p]
    hint = "expected 4 comma-separated positive integers N,C,H,W, e.g. 1,3,224,224"
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise _usage(f"malformed --input-shape '{text}': {hint}.") from None
    if len(dims) != 4:
        raise _usage(f"malformed --input-shape '{text}': {hint}; found {len(dims)} value{'s' * (len(dims) != 1)}.")
    if any(d <= 0 for d in dims):
        raise _usage(f"malformed --input-shape '{text}': {hint}; found a size that is not positive.")
    return dims


def _parse_alpha_for(items: List[str]) -> Optional[dict]:
    if not items:
        return None
    out = {}
    for item in items:
        glob, sep, value = item.rpartition("=")
        if not sep or not glob.strip():
            raise _usage(f"malformed --alpha-for '{item}': expected GLOB=ALPHA, e.g. 'layer4.*=0' or 'features.1*=0.25'.")
        out[glob.strip()] = _parse_alpha(value.strip(), f"--alpha-for {glob.strip()}=")
    return out


def _check_writable(path: Path, what: str) -> None:
    """Fail fast, before the long steps, when ``path`` cannot be written."""
    if path.is_dir():
        raise CLIError(f"cannot write {what} to {path}: it is a directory. Hint: give a file name, e.g. -o {path / 'model_oct.pt'}.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise CLIError(f"cannot write {what} to {path}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise CLIError(f"cannot write {what} to {path}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CLIError(f"cannot write {what} to {path}: permission denied. Hint: choose another path.")


def _example_shape(model: torch.nn.Module, given: Optional[tuple]) -> tuple[int, ...]:
    if given is not None:
        return given
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            return (1, m.in_channels, 224, 224)
    return (1, 3, 224, 224)


def _random_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _check_takes(model: torch.nn.Module, x: torch.Tensor, given: bool) -> None:
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        expects = f" (its first Conv2d takes {convs[0].in_channels} channels)" if convs else ""
        how = "" if given else " (the default)"
        raise _usage(
            f"the model cannot take an input of shape {_shape_text(tuple(x.shape))}{how}: "
            f"{_load._exc(e)}. Hint: pass --input-shape N,C,H,W that the model accepts{expects}."
        ) from e


def _leaf_specs(model: torch.nn.Module, leaves: List[str]) -> tuple:
    classes = {type(m).__name__: type(m) for m in model.modules()}
    return tuple(classes.get(spec, spec) for spec in leaves)


def _human_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:g}"


def _file_size(path: Path) -> str:
    size = path.stat().st_size
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _write_json(ui: _UI, data: Any, target: str) -> None:
    text = json.dumps(data, indent=2, default=_json_default)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    path = Path(target)
    try:
        path.write_text(text + "\n")
    except OSError as e:
        raise CLIError(f"cannot write the JSON report to {path}: {e.strerror or e}.") from e
    ui.say(f"Wrote the JSON report to [cyan]{escape(str(path))}[/]")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Size):
        return list(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def _same_outputs(a: Any, b: Any) -> Optional[str]:
    """None when identical (NaN equal to NaN), else a description of the difference."""
    try:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    except AssertionError as e:
        return _one_line(str(e))[:300]
    return None


# --------------------------------------------------------------------------- loading, shared


def _load_model(ui: _UI, spec: str, weights: Optional[str]) -> _load.LoadedModel:
    with ui.step(f"Loading {spec}"):
        loaded = _load.load_model(spec)
        if weights is not None:
            with ui.step(f"Loading weights {weights}"):
                loaded.source += f", weights from {_load.load_weights(loaded.model, weights)}"
        loaded.model.eval()
    params = sum(p.numel() for p in loaded.model.parameters())
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in loaded.model.modules())
    ui.say(
        f"Loaded [bold]{escape(loaded.source)}[/]: {_human_count(params)} parameters, "
        f"{convs} Conv2d layer{'s' * (convs != 1)}"
    )
    return loaded


def _example(ui: _UI, model: torch.nn.Module, input_shape: Optional[tuple]) -> torch.Tensor:
    shape = _example_shape(model, input_shape)
    x = _random_input(shape, seed=0)
    with ui.step(f"Running the model on a random {_shape_text(shape)} input"):
        _check_takes(model, x, given=input_shape is not None)
    return x


# --------------------------------------------------------------------------- convert


@app.command(epilog=_CONVERT_EPILOG)
def convert(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=_MODEL_HELP, show_default=False)],
    alpha: Annotated[
        str, typer.Option("--alpha", "-a", metavar="A", help="Fraction of channels in the low-frequency branch, in [0, 1].")
    ] = "0.5",
    octave: Annotated[str, typer.Option(metavar="N", help="Resolution ratio between the two branches.")] = "2",
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", "-i", metavar="N,C,H,W", help=_SHAPE_HELP, show_default=False)] = None,
    stride_mode: Annotated[str, typer.Option(metavar="conv|pool", help="Strided convs: keep the stride in the conv, or pool first (the paper).")] = "conv",
    min_size: Annotated[str, typer.Option(metavar="PX", help="Leave convs plain where the low branch would be smaller than this.")] = "8",
    policy: Annotated[str, typer.Option(metavar="default|latency", help="'latency' keeps plain the blocks where octave layers cannot pay for themselves on a CPU (depthwise, thin groups, small maps).")] = "default",
    exclude: Annotated[Optional[List[str]], typer.Option(metavar="GLOB", help="Keep the convs whose names match GLOB plain (repeatable).")] = None,
    alpha_for: Annotated[Optional[List[str]], typer.Option(metavar="GLOB=A", help="Alpha for the convs whose names match GLOB (repeatable).")] = None,
    leaf: Annotated[Optional[List[str]], typer.Option(metavar="GLOB", help="Do not trace into these submodules (qualified-name glob or class name; repeatable).")] = None,
    weights: Annotated[Optional[str], typer.Option(metavar="CKPT", help="Load this state_dict (or checkpoint holding one) before converting.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="Where to write the converted model. \\[default: <model name>_oct.pt]", show_default=False)] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", metavar="PATH|-", help="Write the before/after comparison as JSON. '-': to stdout, and nothing else there (the tables are left out, messages go to stderr).")] = None,
    latency: Annotated[bool, typer.Option("--latency", help="Also time both models (slower).")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the converted model, and that the saved file reloads with identical outputs.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and the JSON).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks.")] = False,
) -> None:
    """Convert MODEL to an octave network, save it, and compare it with the original."""
    ui = _UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    with ui.boundary():
        _convert(
            ui,
            spec=model,
            alpha=_parse_alpha(alpha, "--alpha"),
            octave=_parse_int(octave, "--octave", 1, "an integer >= 1, e.g. 2 (1: same resolution, same outputs)"),
            input_shape=_parse_shape(input_shape) if input_shape is not None else None,
            stride_mode=_parse_choice(stride_mode, "--stride-mode", ("conv", "pool")),
            min_size=_parse_int(min_size, "--min-size", 0, "a number of pixels >= 0, e.g. 8"),
            policy=_parse_choice(policy, "--policy", ("default", "latency")),
            exclude=tuple(exclude or ()),
            alpha_for=_parse_alpha_for(alpha_for or []),
            leaf=list(leaf or ()),
            weights=weights,
            output=output,
            json_out=json_out,
            latency=latency,
            verify=verify,
        )


def _parse_choice(text: str, what: str, choices: tuple) -> str:
    if text not in choices:
        raise _usage(f"{what} '{text}' is not one of {', '.join(choices)}.")
    return text


def _convert(
    ui: _UI,
    *,
    spec: str,
    alpha: float,
    octave: int,
    input_shape: Optional[tuple],
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
) -> None:
    if output is not None:
        _check_writable(Path(output), "the converted model")
    if json_out not in (None, "-"):
        _check_writable(Path(json_out), "the JSON report")

    loaded = _load_model(ui, spec, weights)
    original = loaded.model
    out_path = Path(output) if output is not None else Path.cwd() / f"{loaded.name}_oct.pt"
    if output is None:
        _check_writable(out_path, "the converted model")
    x = _example(ui, original, input_shape)

    record = None
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in original.modules())
    if n_convs == 0:
        ui.note("the model has no Conv2d layer, so there is nothing to convert: the output is the model itself.")
        converted = original
    else:
        kwargs = dict(
            example_inputs=x,
            octave=octave,
            stride_mode=stride_mode,
            min_size=min_size,
            policy=policy,
            exclude=exclude,
            alpha_for=alpha_for,
            leaf_modules=_leaf_specs(original, leaf),
            verify=verify,
        )
        with ui.step(f"Converting at alpha={alpha:g}: tracing, rewriting, transferring weights" + (", verifying" if verify else "")):
            try:
                converted = octify.convert(original, alpha, **kwargs)
            except ConversionError:
                raise
            except (ValueError, TypeError) as e:  # convert's argument checks
                raise _usage(_one_line(str(e))) from e
        converted.eval()
        try:
            record = octify.record_of(converted)
        except ValueError:
            record = None
        if record is not None:
            ui.say(
                f"Converted [bold]{len(record.converted)}[/] of {len(record.convs)} Conv2d layers at alpha={alpha:g} "
                f"(octave {octave}, stride mode {stride_mode}); {len(record.plain)} left plain, "
                f"{record.count('merge')} merge{'s' * (record.count('merge') != 1)}, "
                f"{record.count('split')} split{'s' * (record.count('split') != 1)} inserted"
            )

    with ui.step(f"Saving to {out_path}"):
        try:
            octify.save(converted, out_path)
        except OSError as e:
            raise CLIError(f"cannot write the converted model to {out_path}: {e.strerror or e}. Hint: choose another path with -o.") from e
    if verify:
        with ui.step(f"Checking that {out_path.name} reloads with identical outputs"):
            _check_reload(converted, out_path, tuple(x.shape))

    with ui.step("Profiling the original and the converted model" + (", timing both" if latency else "")):
        comparison = octify.compare(original, converted, x, latency=latency)

    if json_out != "-":  # with JSON on stdout, the JSON is the report
        ui.out.print(comparison)
        if record is not None:
            _print_record(ui, record)
    _note_user_classes(ui, converted, loaded)
    ui.say(
        f"Saved [cyan]{escape(str(out_path))}[/] ({_file_size(out_path)})"
        + ("; it reloads with identical outputs" if verify else "")
        + f". Load it with octify.load({escape(repr(str(out_path)))})."
    )
    if json_out is not None:
        data = comparison.to_dict()
        if isinstance(data, dict):
            data.setdefault("source", loaded.source)
            data.setdefault("input_shape", list(x.shape))
            data.setdefault("output", str(out_path))
            if record is not None:
                data.setdefault("conversion", record.to_dict())
        _write_json(ui, data, json_out)


def _check_reload(model: torch.nn.Module, path: Path, shape: tuple) -> None:
    try:
        reloaded = octify.load(path)
    except Exception as e:
        raise CLIError(f"the saved model {path} does not load back: {_load._exc(e)}") from e
    x = _random_input(shape, seed=1)
    with torch.no_grad():
        want, got = model(x), reloaded(x)
    diff = _same_outputs(got, want)
    if diff is not None:
        raise CLIError(f"the model reloaded from {path} gives different outputs from the converted one: {diff}")


def _print_record(ui: _UI, record: Any) -> None:
    plain = record.plain
    if plain:
        table = Table(title=f"Convs left plain ({len(plain)})", title_justify="left", show_edge=False)
        table.add_column("layer", style="cyan", no_wrap=True)
        table.add_column("reason")
        for c in plain:
            table.add_row(escape(c.name), escape(str(c.plain_reason)))
        ui.out.print(table)
    if record.merges:
        table = Table(title=f"Merges and splits inserted ({len(record.merges)})", title_justify="left", show_edge=False)
        table.add_column("kind", no_wrap=True)
        table.add_column("before node", style="cyan", no_wrap=True)
        table.add_column("op")
        table.add_column("reason")
        for m in record.merges:
            table.add_row(m.kind, escape(m.node), escape(m.target), escape(m.reason))
        ui.out.print(table)


def _note_user_classes(ui: _UI, model: torch.nn.Module, loaded: _load.LoadedModel) -> None:
    """A saved model that keeps classes of the model file needs that file importable to load."""
    if loaded.module_name is None:
        return
    names = sorted({type(m).__name__ for m in model.modules() if type(m).__module__ == loaded.module_name})
    if not names:
        return
    if loaded.module_name.startswith("_octify_model_"):
        ui.note(
            f"the saved model keeps {', '.join(names)} from the model file, which was imported under a private "
            "name: it loads again only in this process. Hint: rename the file to a valid module name."
        )
    else:
        ui.note(
            f"the saved model keeps {', '.join(names)} from {loaded.module_name}.py: to load it elsewhere, "
            f"make `{loaded.module_name}` importable (run from its directory, or put it on PYTHONPATH)."
        )


# --------------------------------------------------------------------------- report


@app.command(epilog=_REPORT_EPILOG)
def report(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=_MODEL_HELP, show_default=False)],
    input_shape: Annotated[Optional[str], typer.Option("--input-shape", "-i", metavar="N,C,H,W", help=_SHAPE_HELP, show_default=False)] = None,
    weights: Annotated[Optional[str], typer.Option(metavar="CKPT", help="Load this state_dict (or checkpoint holding one) first.")] = None,
    json_out: Annotated[Optional[str], typer.Option("--json", metavar="PATH|-", help="Write the profile as JSON. '-': to stdout, and nothing else there (the table is left out, messages go to stderr).")] = None,
    latency: Annotated[bool, typer.Option("--latency", help="Also time the model (slower).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and the JSON).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks.")] = False,
) -> None:
    """Profile MODEL as it is (MACs, FLOPs, parameters, feature-map memory per layer); no conversion."""
    ui = _UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    with ui.boundary():
        shape = _parse_shape(input_shape) if input_shape is not None else None
        if json_out not in (None, "-"):
            _check_writable(Path(json_out), "the JSON report")
        loaded = _load_model(ui, model, weights)
        x = _example(ui, loaded.model, shape)
        with ui.step("Profiling" + (" and timing" if latency else "")):
            prof = octify.profile(loaded.model, x, latency=latency)
        if json_out != "-":
            ui.out.print(prof)
        if json_out is not None:
            data = prof.to_dict()
            if isinstance(data, dict):
                data.setdefault("source", loaded.source)
                data.setdefault("input_shape", list(x.shape))
            _write_json(ui, data, json_out)


def main() -> None:
    """Console-script entry point (``octify``)."""
    app(prog_name="octify")


if __name__ == "__main__":  # pragma: no cover
    main()
