"""``octify finetune``: distil the original into its converted model on the user's data, and
show fidelity before and after on a held-out split. ``--nproc K`` relaunches itself under
torch's own launcher (``torch.distributed.run``, as ``torchrun``) with K local processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..io import save
from ..record import record_of
from ..tune.best import split_validation
from ..tune.distill import StepInfo, finetune
from ..tune.distributed import init_from_env, rank_and_world
from .commands import RANDOM_WEIGHTS, check_saved_suffix, image_prep, load_user_model
from .console import UI, CLIError, usage, write_json
from .data import load_dataset
from .options import check_writable
from .saved import check_made_from, check_swapped, load_converted

__all__ = ["run_finetune", "launch_argv"]


def launch_argv(nproc: int, args: List[str]) -> List[str]:
    """The command that runs ``octify finetune ARGS`` in ``nproc`` local processes through torch's launcher."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "octify.cli", "finetune", *args]


def _progress(ui: UI) -> Progress:
    return Progress(
        TextColumn("Fine-tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("agreement {task.fields[agree]}"), TextColumn("held out {task.fields[held]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=ui.out, transient=False, disable=not ui.out.is_terminal or ui.out.quiet,
    )


def _row(r: Dict[str, Any]) -> List[str]:
    acc = f"{r['accuracy']:.2%}" if "accuracy" in r else "-"
    agree = f"{r['agreement']:.2%}" if r.get("agreement") is not None else "-"
    cos = f"{r['cosine']:.4f}" if r.get("cosine") is not None else "-"
    return [agree, f"{r['rel_error']:.4f}", cos, acc]


def run_finetune(
    ui: UI, *, spec: str, model_args: dict, converted_path: str, data: str, weights: Optional[str], steps: int, batch_size: int,
    lr: float, holdout: float, seed: int, nproc: int, checkpoint: Optional[str], checkpoint_every: int,
    output: Optional[str], json_out: Optional[str], relaunch_args: List[str], resize: Optional[int] = None, normalize: Any = None,
    allow_random_teacher: bool = False, loss: str = "auto", trusted: bool = False, **tune: Any,
) -> None:
    """``tune``: more of :func:`octify.finetune`'s options (features, feature_weight, augment, bf16)."""
    out_path = Path(output) if output is not None else Path(converted_path).with_name(Path(converted_path).stem + "_tuned.safetensors")
    if int(os.environ.get("RANK", "0")) == 0:
        check_writable(out_path, "the fine-tuned model")
        if output is not None:
            check_saved_suffix(output, "-o")
        if json_out not in (None, "-"):
            check_writable(Path(json_out), "the JSON report")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        ui.say(f"Launching {nproc} processes with torch.distributed.run (gloo on CPU, NCCL on GPU)")
        code = subprocess.call(launch_argv(nproc, relaunch_args))
        if code:
            raise CLIError(f"the {nproc}-process run failed (exit code {code}); its processes printed why above.", code)
        return
    distributed = init_from_env()
    try:
        _finetune(ui, spec, model_args, converted_path, data, weights, steps, batch_size, lr, holdout, seed, checkpoint, checkpoint_every,
                  out_path, json_out, resize, normalize, allow_random_teacher, loss, tune, trusted)
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


def _finetune(
    ui: UI, spec: str, model_args: dict, converted_path: str, data: str, weights: Optional[str], steps: int, batch_size: int, lr: float,
    holdout: float, seed: int, checkpoint: Optional[str], checkpoint_every: int, out_path: Path, json_out: Optional[str],
    resize: Optional[int], normalize: Any, allow_random_teacher: bool, loss: str = "auto", tune: Optional[Dict[str, Any]] = None,
    trusted: bool = False,
) -> None:
    rank, world = rank_and_world()
    quiet_rank = rank != 0
    if quiet_rank:
        ui.out.quiet = True
    with ui.step(f"Checking the converted model {converted_path}"):
        check_swapped(spec, converted_path, trusted)
        converted, record = load_converted(converted_path, spec, None, trusted)  # the record; the model is made from MODEL below
    if record.random_weights and weights is not None:
        ui.warn(f"{converted_path} was converted from MODEL's random initial weights (octify convert without --weights): "
                "fine-tuning starts it from those, not from the trained original. Hint: octify convert MODEL --weights CKPT first.")
    torch.manual_seed(seed)  # a model built with random weights is then the same in every run and process
    loaded = load_user_model(ui, spec, weights, model_args, trusted)
    if loaded.random_weights:
        if not allow_random_teacher:
            raise usage(f"{RANDOM_WEIGHTS}: fine-tuning would teach the converted model to imitate an untrained network. "
                        "Hint: pass --weights CKPT (the trained original's state_dict), or --allow-random-teacher for a dry run.")
        ui.note(f"{RANDOM_WEIGHTS}, and --allow-random-teacher: the converted model learns to imitate an untrained network.")
    original = loaded.model
    if converted is None:
        with ui.step(f"Loading the converted model {converted_path}, rebuilt from MODEL"):
            converted, record = load_converted(converted_path, spec, original, trusted)
    check_made_from(original, converted, spec, converted_path)
    if world > 1:  # and every process distils from rank 0's original, whatever its constructor draws
        for t in list(original.parameters()) + list(original.buffers()):
            torch.distributed.broadcast(t.data, src=0)
    example = torch.empty(record.input_shapes[0] if record.input_shapes else (1, 3, 224, 224), device="meta")
    with ui.step(f"Loading the data {data}"):
        dataset, described = load_dataset(data, image_prep(example, resize, normalize))
    train, held, why = split_validation(dataset, holdout, seed)
    if held is None:
        raise usage(f"--{why.removeprefix('none (').rstrip(')')}: expected a fraction giving each side a sample.")
    if batch_size % world:
        raise usage(f"--batch-size {batch_size} is the global batch: expected a multiple of the {world} processes.")
    if batch_size > len(train):
        raise usage(f"--batch-size {batch_size} is larger than the {len(train)} training samples of {data}: expected at most "
                    f"{len(train)}. Hint: --batch-size {_fitting_batch(len(train), world)}, or more data.")
    ui.say(f"Data: {escape(described)}: {len(train)} samples to train on, {len(held)} held out (--holdout {holdout:g})")
    if len(held) < FEW_HELD_OUT:
        ui.warn(
            f"only {len(held)} held-out samples: one sample moves the agreement by {1 / len(held):.1%}, too coarse to tell a "
            f"better model from a worse one. Hint: a larger --holdout, or more data (a few hundred held-out samples)."
        )
    progress = _progress(ui)
    task = progress.add_task("finetune", total=steps, loss="-", agree="-", held="-")

    def on_step(info: StepInfo) -> None:
        agree = f"{info.agreement:.1%}" if info.agreement is not None else "-"
        fields = {"completed": info.step, "loss": f"{info.loss:.4f}", "agree": agree}
        if info.validation is not None:
            fields["held"] = f"{_measure_text(info.validation)} (best: step {info.best_step})"
        progress.update(task, **fields)

    started = time.perf_counter()
    with progress:  # finetune's argument checks are OptionErrors: usage errors at the boundary
        tuned = finetune(
            original, converted, train, validation=held, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, callback=on_step, loss=loss, **(tune or {}),
        )
    seconds = time.perf_counter() - started
    if rank != 0:
        return
    save(tuned, out_path, spec=spec, model_args=model_args)
    ft = record_of(tuned).finetune
    before, last, after = ft["start"], ft["end"], ft["best"]
    table = Table(title=f"Fidelity to the original on {len(held)} held-out samples", title_justify="left")
    for col in ("", "top-1 agreement", "rel. error", "cosine", "accuracy"):
        table.add_column(col, justify="right" if col else "left")
    if before.get("original_accuracy") is not None:
        table.add_row("original", "", "", "", f"{before['original_accuracy']:.2%}")
    table.add_row("before", *_row(before))
    table.add_row(f"after {steps} steps", *_row(last))
    if ft["kept"] == "best":
        table.add_row(f"kept: step {ft['best_step']}", *_row(after))
    if json_out != "-":
        ui.out.print(table)
        ui.say(_kept_text(ft, steps))
        ui.say(f"Loss: {escape(ft['loss'])} (--loss {loss})" + _features_text(ft))
        ui.say(f"Trained {steps} steps of {batch_size} samples in {seconds:.1f} s on {world} process{'es' * (world > 1)}; "
               f"wrote [cyan]{escape(str(out_path))}[/]")
    if json_out is not None:
        write_json(ui, {
            "before": before, "after": after, "last": last, "kept": ft["kept"], "kept_step": ft["best_step"],
            "measure": ft["measure"], "history": ft["history"], "steps": steps, "batch_size": batch_size, "lr": lr,
            "processes": world, "seconds": seconds, "train_samples": len(train), "held_out_samples": len(held),
            "output": str(out_path), "data": described, "loss": ft["loss"], "features": ft["features"],
            "feature_weight": ft["feature_weight"], "augment": ft["augment"], "bf16": ft["bf16"],
        }, json_out)


def _features_text(run: Dict[str, Any]) -> str:
    parts = []
    if run["features"]:
        parts.append(f"plus {run['feature_weight']:g} x variance-scaled MSE on {', '.join(run['features'])}")
    parts += ["augmented views"] * run["augment"] + ["bf16 autocast"] * run["bf16"]
    return "; " + "; ".join(escape(p) for p in parts) if parts else ""


def _fitting_batch(samples: int, world: int) -> int:
    """A batch the data holds, divisible among the processes: the largest power of two."""
    b = 1 << (samples.bit_length() - 1)
    return max(world, b - b % world)


# Below this many held-out samples, one sample moves the agreement by more than a percent.
FEW_HELD_OUT = 100


def _measure_text(r: Dict[str, Any]) -> str:
    return f"{r['agreement']:.1%}" if r.get("agreement") is not None else f"rel. error {r['rel_error']:.4f}"


def _kept_text(run: Dict[str, Any], steps: int) -> str:
    """Which weights were written, and why, in words."""
    how = {
        "agreement_floor": "the lowest relative error with agreement no lower than before",
        "agreement": "the highest agreement", "rel_error": "the lowest relative error", "accuracy": "the highest accuracy",
        "cosine": "the highest mean cosine to the original's outputs",
    }.get(run["measure"], str(run["measure"]))
    if run["kept"] == "last":
        return f"Kept the weights after step {steps}: {how} on the held-out samples."
    if run["best_step"] == 0:
        return (f"[yellow]Kept the weights from before fine-tuning[/]: no step improved on them ({how}). "
                "Hint: fewer steps or a lower --lr; or more data.")
    return f"Kept the weights of step {run['best_step']} of {steps}: {how} on the held-out samples."
