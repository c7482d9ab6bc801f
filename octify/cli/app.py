"""The ``octify`` command line: thin typer commands over the library (see :mod:`.commands`).

Options are typed (:mod:`.options` turns each into its value with the library's validators);
errors of any kind leave as one line on stderr with an exit code (:mod:`.console`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, List, Optional

import typer
from typer.core import TyperGroup

from ..options import ConvertOptions, FinetuneOptions
from ..utils.conventions import header_text
from ..utils.choices import EXPORT_FORMATS, FINETUNE_LOSSES, ONNX_EXPORTERS, POLICIES, STRIDE_MODES
from . import options as opt
from .console import UI, print_error

__all__ = ["app", "main"]


# --------------------------------------------------------------------------- help texts

_APP_HELP = """Turn a PyTorch CNN into an Octave-Convolution network (Chen et al., "Drop an Octave",
arXiv 1904.05049), with its weights, and report what it saves.

[b]MODEL[/b] is [cyan]path/to/file.py[/] (its build_model()/get_model()/create_model(), else a
module-level `model`, else the one nn.Module class that builds without arguments),
[cyan]file.py:NAME[/] (a class, factory or instance), [cyan]torchvision:NAME[/] (weights=None),
[cyan]timm:NAME[/] (pretrained=False), or a model saved by octify as [cyan]file.safetensors[/].
Constructor arguments: [cyan]--model-arg KEY=VALUE[/], repeatable.
"""

_APP_EPILOG = """[b]Examples[/b]

  octify convert torchvision:resnet50 --alpha 0.5 -o resnet50_oct.safetensors

  octify convert examples/custom_cnn.py --input-shape 1,3,64,64 --json report.json

  octify report torchvision:resnet18 --input-shape 1,3,224,224 --latency

  octify export resnet50_oct.safetensors --format onnx -o resnet50_oct.onnx
"""

_CONVERT_EPILOG = """[b]Examples[/b]

  octify convert torchvision:resnet50                     [dim]# alpha 0.5, writes resnet50_oct.safetensors[/]

  octify convert examples/model.py --alpha 0.25 --exclude 'layer4.*' -o oct.safetensors

  octify convert vgg.py:VGG --model-arg vgg_name=VGG16 -i 1,3,32,32   [dim]# constructor arguments[/]

  octify convert timm:resnet50d                           [dim]# timm.create_model, pretrained=False[/]

  octify convert examples/custom_cnn.py -i 1,3,64,64 --alpha-for 'stage3.*=0.25' --layers

  octify convert torchvision:mobilenet_v2 --policy latency --html mnv2.html

  octify convert net.py --weights ckpt.pth --json - > comparison.json

  octify convert net.py --weights ckpt.pth -i 1,3,64,64 --calibration photos/ --fidelity held_out/   # folders of images

The file holds the weights and a recipe (no pickle, no code): octify commands take it as MODEL; in Python,
octify.load(PATH) for torchvision/timm models, octify.load(PATH, model=ORIGINAL) for others.
"""

_COUNTING = "\n\n[b]How octify counts[/b]\n\n" + header_text() + "\n"

_REPORT_EPILOG = """[b]Examples[/b]

  octify report torchvision:resnet50

  octify report examples/custom_cnn.py -i 1,3,64,64 --json -

  octify report resnet50_oct.safetensors --latency          [dim]# a converted model saved by octify convert[/]
"""

_MODEL_HELP = "path/to/file.py, file.py:NAME, torchvision:NAME, timm:NAME, or a model saved by octify (file.safetensors)."
_EXPORT_EPILOG = """[b]Examples[/b]

  octify export resnet50_oct.safetensors                 [dim]# ONNX, writes resnet50_oct.onnx[/]

  octify export resnet50_oct.safetensors -f exported-program -o resnet50_oct.pt2

  octify export resnet50_oct.safetensors -f onnx --onnx-exporter legacy -i 8,3,224,224 --json -

The input shape defaults to the one the model was converted on. The ONNX file's input and output names are printed (input_0, ...; --input-name, --output-name choose them). ONNX needs pip install 'octify\\[export]'.
"""

_SHAPE_HELP = (
    "Shape of the random example input: N,C,H,W for images, N,C,L for audio (Conv1d), N,C,T,H,W for video (Conv3d). "
    "\\[default: 1,C,224,224 (1,C,16000; 1,C,16,112,112), C from the first conv]"
)


def _types_only_where_a_value_is_taken() -> None:
    """typer's help prints a type column: ``<bool>`` beside every flag and ``<str>`` beside every
    argument, which tells the reader nothing and narrows the descriptions. Keep the column for
    options that take a value (it shows their metavar: ``N``, ``PATH``). This process is octify's
    command line, so typer's classes are adjusted here, once, at import."""
    from typer.core import TyperArgument, TyperOption

    if getattr(TyperOption, "_octify_types", False):
        return
    takes_value = TyperOption.display_type_rich
    TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else takes_value(self, ctx)  # type: ignore[method-assign]
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    TyperOption._octify_types = True  # type: ignore[attr-defined]


_types_only_where_a_value_is_taken()


class _OneLineErrors(TyperGroup):
    """Option errors (a bad value, an unknown option) as one line, like every other error."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print_error("aborted")
            code = 1
        except typer.TyperException as e:  # click's usage errors
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                print_error(f"{e.format_message()}{where}")
            code = getattr(e, "exit_code", 2)
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="octify",
    cls=_OneLineErrors,
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
        from importlib.metadata import PackageNotFoundError, version

        from .. import __version__

        try:
            torch_version = version("torch")
        except PackageNotFoundError:  # pragma: no cover - octify requires torch
            torch_version = "not installed"
        typer.echo(f"octify {__version__} (torch {torch_version})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", help="Show the version and exit.", callback=_version_callback, is_eager=True),
    ] = None,
) -> None:
    """Turn a PyTorch CNN into an Octave-Convolution network."""


_Json = Annotated[
    Optional[str],
    typer.Option("--json", metavar="PATH|-", help="Write the report as JSON. '-': to stdout, and nothing else there (the tables are left out, messages go to stderr)."),
]
_Shape = Annotated[
    Optional[opt.Shape],
    typer.Option("--input-shape", "-i", metavar="SHAPE", parser=opt.shape, help=_SHAPE_HELP, show_default=False),
]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (and the JSON).")]
_Layers = Annotated[bool, typer.Option("--layers", help="Also print the per-layer table (every layer with MACs) and every name left plain.")]
_Html = Annotated[Optional[str], typer.Option("--html", metavar="PATH", help="Also write the report as one self-contained HTML page with charts (opens offline).")]
_Runs = Annotated[int, typer.Option(metavar="N", parser=opt.integer("runs", 1, "a number of timed runs >= 1, e.g. 20"), help="--latency: timed runs per model (after 3 warm-up runs).")]
_Threads = Annotated[Optional[int], typer.Option(metavar="N", parser=opt.integer("threads", 1, "a number of threads >= 1, e.g. 4"), help="--latency: CPU threads while timing. \\[default: torch's current setting]", show_default=False)]
_Debug = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks.")]
_Trusted = Annotated[bool, typer.Option("--trusted", help="Read a pickled model file (.pt of octify 0.1, torch.save), which runs code stored in it: only for files you trust.")]
_Resize = Annotated[Optional[int], typer.Option(
    metavar="PX", parser=opt.integer("resize", 1, "a number of pixels >= 1, e.g. 256"),
    help="Image files: resize the shorter side to PX before the centre crop to the input size. \\[default: the input's shorter side]", show_default=False,
)]
_Normalize = Annotated[Optional[opt.Normalize], typer.Option(
    metavar="NORM", parser=opt.normalize,
    help="Image files: normalise as torchvision's ImageNet models ('imagenet', the default), not at all ('none', pixels in [0, 1]), or by MEAN/STD (e.g. 0.5/0.5, or 0.49,0.48,0.45/0.25,0.24,0.26).",
    show_default=False,
)]
_ModelArgs = Annotated[Optional[List[opt.ModelArg]], typer.Option(
    "--model-arg", metavar="KEY=VALUE", parser=opt.model_arg,
    help="A constructor argument of MODEL (repeatable): the class or factory of file.py, the torchvision builder, timm.create_model. VALUE is a Python literal (10, 0.5, True, [2, 2]), else text.",
)]


@app.command(epilog=_CONVERT_EPILOG + _COUNTING)
def convert(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=_MODEL_HELP, show_default=False)],
    alpha: Annotated[float, typer.Option("--alpha", "-a", metavar="A", parser=opt.alpha("alpha"), help="Fraction of channels in the low-frequency branch, in [0, 1].")] = ConvertOptions.alpha,
    octave: Annotated[int, typer.Option(metavar="N", parser=opt.integer("octave", 1, "an integer >= 1, e.g. 2 (1: same resolution, same outputs)"), help="Resolution ratio between the two branches.")] = ConvertOptions.octave,
    input_shape: _Shape = None,
    stride_mode: Annotated[str, typer.Option(metavar="conv|pool", parser=opt.choice("stride_mode", STRIDE_MODES), help="Strided convs: keep the stride in the conv, or pool first (the paper).")] = ConvertOptions.stride_mode,
    min_size: Annotated[int, typer.Option(metavar="PX", parser=opt.integer("min_size", 0, "a number of pixels >= 0, e.g. 8"), help="Keep a conv's output all high (alpha_out 0) where its output map is smaller than PX in height or width; the last octave layer before such maps merges back to full resolution.")] = ConvertOptions.min_size,
    policy: Annotated[str, typer.Option(metavar="|".join(POLICIES), parser=opt.choice("policy", POLICIES), help="'latency' times each block plain and at alphas 0.25/0.5/0.75 on this machine (the -i shape, --threads) and keeps the fastest plan, never slower than the plain model; 'latency-rules' keeps plain, without timing, the blocks where octave layers rarely pay on a CPU (depthwise, thin groups, small maps).")] = ConvertOptions.policy,
    budget: Annotated[Optional[float], typer.Option(metavar="F", parser=opt.number("budget", 0.0, above=True, example="e.g. 0.7"), help="With --policy latency: the least fidelity loss within F x the plain blocks' time.")] = ConvertOptions.latency_budget,
    fidelity_budget: Annotated[Optional[float], typer.Option(metavar="F", parser=opt.number("fidelity_budget", 0.0, example="e.g. 0.05"), help="With --policy latency: the fastest plan whose fidelity cost (energy lost an octave down, summed over blocks) is at most F.")] = ConvertOptions.fidelity_budget,
    exclude: Annotated[Optional[List[str]], typer.Option(metavar="GLOB", help="Keep the convs whose names match GLOB plain (repeatable).")] = None,
    alpha_for: Annotated[Optional[List[opt.GlobAlpha]], typer.Option(metavar="GLOB=A", parser=opt.glob_alpha, help="Alpha for the convs whose names match GLOB (repeatable).")] = None,
    leaf: Annotated[Optional[List[str]], typer.Option(metavar="GLOB", help="Do not trace into these submodules (qualified-name glob or class name; repeatable).")] = None,
    model_arg: _ModelArgs = None,
    weights: Annotated[Optional[str], typer.Option(metavar="CKPT", help="Load this state_dict (or checkpoint holding one) before converting.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="Where to write the converted model (.safetensors). \\[default: <model name>_oct.safetensors]", show_default=False)] = None,
    json_out: _Json = None,
    latency: Annotated[bool, typer.Option("--latency", help="Also time both models, alternated run by run (slower).")] = False,
    runs: _Runs = 20,
    threads: _Threads = None,
    layers: _Layers = False,
    html: _Html = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the converted model, and that the saved file reloads with identical outputs.")] = True,
    calibration: Annotated[Optional[str], typer.Option(metavar="DATA", help="Calibrate on these images (a folder, no labels needed; or file.py:FACTORY returning a Dataset): measured low channels, batch-norm drift corrected.")] = None,
    reconstruct: Annotated[Optional[str], typer.Option(metavar="DATA", help="Then fit each octave layer to the original's on these images (no labels; closed-form least squares, layer by layer).")] = None,
    fidelity_data: Annotated[Optional[str], typer.Option("--fidelity", metavar="DATA", help="Measure fidelity to the original (agreement, rel. error; accuracy when class folders give labels) on these images (a folder, or file.py:FACTORY).")] = None,
    data_samples: Annotated[int, typer.Option(metavar="N", parser=opt.integer("data_samples", 1, "a number of samples >= 1, e.g. 512"), help="Samples taken from --calibration, --reconstruct and --fidelity data.")] = 512,
    resize: _Resize = None,
    normalize: _Normalize = None,
    quiet: _Quiet = False,
    debug: _Debug = False,
    trusted: _Trusted = False,
) -> None:
    """Convert MODEL to an octave network, save it, and compare it with the original."""
    ui = UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    with ui.boundary():
        from .commands import run_convert  # here, not at the top: torch loads only when a command runs

        run_convert(
            ui, spec=model, alpha=alpha, octave=octave, input_shape=input_shape, stride_mode=stride_mode,
            min_size=min_size, policy=policy, exclude=tuple(exclude or ()),
            alpha_for={g.glob: g.alpha for g in alpha_for} if alpha_for else None, leaf=list(leaf or ()),
            model_args=opt.model_kwargs(model_arg), weights=weights, output=output, json_out=json_out, latency=latency, verify=verify,
            calibration=calibration, fidelity_data=fidelity_data, data_samples=data_samples, resize=resize, normalize=normalize,
            reconstruct_data=reconstruct, latency_budget=budget, fidelity_budget=fidelity_budget,
            runs=runs, threads=threads, layers=layers, html=html, trusted=trusted,
        )


@app.command(epilog=_REPORT_EPILOG + _COUNTING)
def report(
    model: Annotated[str, typer.Argument(metavar="MODEL", help=_MODEL_HELP, show_default=False)],
    input_shape: _Shape = None,
    model_arg: _ModelArgs = None,
    weights: Annotated[Optional[str], typer.Option(metavar="CKPT", help="Load this state_dict (or checkpoint holding one) first.")] = None,
    json_out: _Json = None,
    latency: Annotated[bool, typer.Option("--latency", help="Also time the model (slower).")] = False,
    runs: _Runs = 20,
    threads: _Threads = None,
    layers: _Layers = False,
    html: _Html = None,
    quiet: _Quiet = False,
    debug: _Debug = False,
    trusted: _Trusted = False,
) -> None:
    """Profile MODEL as it is (MACs, FLOPs, parameters, feature-map memory by stage); no conversion."""
    ui = UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    with ui.boundary():
        from .commands import run_report  # here, not at the top: torch loads only when a command runs

        run_report(
            ui, spec=model, model_args=opt.model_kwargs(model_arg), input_shape=input_shape, weights=weights, json_out=json_out,
            latency=latency, runs=runs,
            threads=threads, layers=layers, html=html, trusted=trusted,
        )


@app.command(epilog=_EXPORT_EPILOG)
def export(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A converted model saved by `octify convert` (file.safetensors), or " + _MODEL_HELP, show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", metavar="onnx|torchscript|exported-program", parser=opt.choice("format", EXPORT_FORMATS), help="The file format: ONNX (rerun in onnxruntime), TorchScript (torch.jit.trace), or a torch.export ExportedProgram (.pt2).")] = "onnx",
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="Where to write it. \\[default: <model name>.onnx | .torchscript.pt | .pt2]", show_default=False)] = None,
    model_arg: _ModelArgs = None,
    input_shape: _Shape = None,
    freeze: Annotated[bool, typer.Option("--freeze/--no-freeze", help="Export the frozen form (octify.freeze: batch norms folded, weights laid out once), the one to deploy.")] = True,
    onnx_exporter: Annotated[str, typer.Option(metavar="dynamo|legacy", parser=opt.choice("onnx_exporter", ONNX_EXPORTERS), help="ONNX only: torch.onnx's dynamo exporter, or the TorchScript-based one.")] = "dynamo",
    input_name: Annotated[Optional[List[str]], typer.Option(metavar="NAME", help="ONNX only: the name of an input, in order (repeatable). \\[default: input_0, input_1, ...]", show_default=False)] = None,
    output_name: Annotated[Optional[List[str]], typer.Option(metavar="NAME", help="ONNX only: the name of an output, in order (repeatable). \\[default: output_0, ...]", show_default=False)] = None,
    json_out: _Json = None,
    quiet: _Quiet = False,
    debug: _Debug = False,
    trusted: _Trusted = False,
) -> None:
    """Export MODEL for deployment, load the file back, run it and print how far it is from MODEL."""
    ui = UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    with ui.boundary():
        from .exporting import run_export  # here, not at the top: torch loads only when a command runs

        run_export(
            ui, spec=model, model_args=opt.model_kwargs(model_arg), format=format, output=output, input_shape=input_shape, freeze=freeze,
            onnx_exporter=onnx_exporter, json_out=json_out, input_names=tuple(input_name or ()), output_names=tuple(output_name or ()),
            trusted=trusted,
        )


_FINETUNE_EPILOG = """[b]Examples[/b]

  octify finetune torchvision:resnet50 resnet50_oct.safetensors --weights resnet50.pth --data ~/photos --steps 2000 -o resnet50_tuned.safetensors

  octify finetune examples/textures.py textures_oct.safetensors --weights textures.pth --data examples/textures.py:make_dataset --steps 200 --nproc 2

MODEL and --weights give the trained original as for convert (without --weights, a MODEL that draws random weights is refused: it would teach nothing). --data is a folder of images -- no labels needed; class folders add accuracy -- prepared as for convert (resized and centre-cropped to the shape the model was converted on, ImageNet-normalised; --resize, --normalize), or file.py:FACTORY returning a Dataset. A --holdout share is kept out of training and measured before, during and after; the best weights measured there are kept. Under torchrun, or with --nproc K, it runs in DistributedDataParallel.
"""


@app.command(epilog=_FINETUNE_EPILOG)
def finetune(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The original model: " + _MODEL_HELP, show_default=False)],
    converted: Annotated[str, typer.Argument(metavar="CONVERTED", help="Its converted model, saved by octify convert (file.safetensors; rebuilt from MODEL).", show_default=False)],
    data: Annotated[str, typer.Option("--data", "-d", metavar="DATA", help="The training data: a folder of images (no labels needed), or file.py:FACTORY returning a Dataset.", show_default=False)],
    steps: Annotated[int, typer.Option(metavar="N", parser=opt.integer("steps", 1, "a number of optimizer steps >= 1, e.g. 1000"), help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(metavar="B", parser=opt.integer("batch_size", 1, "an integer >= 1, e.g. 64"), help="The global batch (split among processes).")] = FinetuneOptions.batch_size,
    lr: Annotated[float, typer.Option(metavar="LR", parser=opt.number("lr", 0.0, above=True, example="e.g. 0.01"), help="Peak learning rate (SGD, Nesterov momentum 0.9; 5% warm-up, then cosine).")] = FinetuneOptions.lr,
    model_arg: _ModelArgs = None,
    weights: Annotated[Optional[str], typer.Option(metavar="CKPT", help="Load this state_dict (or checkpoint holding one) into MODEL first.")] = None,
    holdout: Annotated[float, typer.Option(metavar="F", parser=opt.fraction("holdout"), help="Share of the data held out to measure fidelity on.")] = FinetuneOptions.holdout,
    loss: Annotated[str, typer.Option(metavar="|".join(FINETUNE_LOSSES), parser=opt.choice("loss", FINETUNE_LOSSES), help="Distillation loss: 'auto' picks one per output (KL for class scores, cosine for embeddings, variance-scaled MSE for maps).")] = FinetuneOptions.loss,
    features: Annotated[Optional[str], typer.Option(metavar="auto|NAMES", help="Also distil these module outputs of MODEL (comma-separated names), or 'auto': the end of each stage that runs octave layers.")] = None,
    feature_weight: Annotated[float, typer.Option(metavar="W", parser=opt.number("feature_weight", 0.0, example="e.g. 1.0"), help="Weight of the feature loss (variance-scaled MSE, averaged over --features) against the output loss.")] = FinetuneOptions.feature_weight,
    augment: Annotated[bool, typer.Option("--augment", help="Random resized crops and left-right flips of the training images (for small sets).")] = FinetuneOptions.augment,
    bf16: Annotated[bool, typer.Option("--bf16", help="Run both models under bfloat16 autocast (faster on CPUs with AMX or AVX-512 BF16, and on GPUs).")] = FinetuneOptions.bf16,
    resize: _Resize = None,
    normalize: _Normalize = None,
    seed: Annotated[int, typer.Option(metavar="S", parser=opt.integer("seed", 0, "an integer >= 0"), help="Seed of the split, the data order and the run.")] = FinetuneOptions.seed,
    nproc: Annotated[int, typer.Option(metavar="K", parser=opt.integer("nproc", 1, "a number of processes >= 1, e.g. 2"), help="Run K local processes (DistributedDataParallel) through torch.distributed.run.")] = 1,
    allow_random_teacher: Annotated[bool, typer.Option("--allow-random-teacher", help="Distil from MODEL even when it has its constructor's random weights (no --weights): a dry run of the pipeline, nothing learned.")] = False,
    checkpoint: Annotated[Optional[str], typer.Option(metavar="PATH", help="Save the run's state here (and resume from it when it exists).")] = None,
    checkpoint_every: Annotated[int, typer.Option(metavar="N", parser=opt.integer("checkpoint_every", 0, "an integer >= 0 (0: at the end only)"), help="Save a checkpoint every N steps.")] = FinetuneOptions.checkpoint_every,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="Where to write the tuned model (.safetensors). \\[default: CONVERTED_tuned.safetensors]", show_default=False)] = None,
    json_out: _Json = None,
    quiet: _Quiet = False,
    debug: _Debug = False,
    trusted: _Trusted = False,
) -> None:
    """Distil MODEL into its converted model on your data; print fidelity before and after."""
    ui = UI(json_to_stdout=json_out == "-", quiet=quiet, debug=debug)
    relaunch = [model, converted, "--data", data, "--steps", str(steps), "--batch-size", str(batch_size), "--lr", repr(lr),
                "--holdout", repr(holdout), "--loss", loss, "--seed", str(seed), "--checkpoint-every", str(checkpoint_every),
                "--feature-weight", repr(feature_weight)] + ["--augment"] * augment + ["--bf16"] * bf16
    for flag, value in (("--weights", weights), ("--checkpoint", checkpoint), ("--output", output), ("--json", json_out), ("--features", features)):
        if value is not None:
            relaunch += [flag, value]
    for a in model_arg or ():
        relaunch += ["--model-arg", f"{a.key}={a.value!r}"]
    if resize is not None:
        relaunch += ["--resize", str(resize)]
    if normalize is not None:
        relaunch += ["--normalize", "none" if normalize.mean is None else f"{','.join(map(repr, normalize.mean))}/{','.join(map(repr, normalize.std))}"]
    relaunch += ["--quiet"] * quiet + ["--debug"] * debug + ["--allow-random-teacher"] * allow_random_teacher + ["--trusted"] * trusted
    with ui.boundary():
        from .finetune import run_finetune

        run_finetune(
            ui, spec=model, model_args=opt.model_kwargs(model_arg), converted_path=converted, data=data, weights=weights,
            steps=steps, batch_size=batch_size, lr=lr, resize=resize, normalize=normalize,
            holdout=holdout, seed=seed, nproc=nproc, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            output=output, json_out=json_out, relaunch_args=relaunch, allow_random_teacher=allow_random_teacher, loss=loss,
            features=features, feature_weight=feature_weight, augment=augment, bf16=bf16, trusted=trusted,
        )


def main() -> None:
    """Console-script entry point (``octify``)."""
    app(prog_name="octify")


if __name__ == "__main__":  # pragma: no cover
    main()
