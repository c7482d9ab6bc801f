"""``octify.finetune``: distil the original into its converted model (knowledge distillation,
Hinton et al. 2015), on one process or under ``torchrun`` with DistributedDataParallel.

Defaults, and where they come from: SGD with Nesterov momentum 0.9 and weight decay 1e-4 at a
fine-tuning learning rate of 0.01 (a tenth of the from-scratch ImageNet rate; Kornblith et al.
2019, Li et al. 2020), linear warm-up over the first 5% of steps then cosine decay (Goyal et al.
2017; Loshchilov & Hutter 2017), KL at temperature 4 scaled by T^2 (Hinton et al. 2015; the KD
baseline of Tian et al. 2020). Labels are not in the loss by default: the target is the
original's function, and cross-entropy pulls the model towards the labels wherever the original
is wrong, away from it (measured: top-1 agreement 0.96 -> 0.88 in 40 steps on a 70%-accurate
original, while its accuracy rose); ``label_weight`` adds it (Hinton et al. used both). Batch
norms train (batch statistics, running averages updated), as in any fine-tuning. Fidelity is
measured on held-out data every tenth of the run and the best weights seen are kept
(``tune/best.py``). Outputs that are not class scores (embeddings, dense maps, several outputs)
get the loss of their kind (``loss="auto"``, ``tune/losses.py``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import OptionError, OptionTypeError
from ..fx.shape_prop import eval_mode
from ..record import record_of
from ..utils.validate import check_module
from ..options import FinetuneOptions
from .best import BestKeeper, split_validation
from .checkpoint import check_same_run, load_checkpoint, save_run
from .augment import augment_batch
from ..utils.runtime import device_of
from .data import float_outputs, split_batch, to_device
from .features import FeatureTaps
from .losses import OutputLoss, kl_loss
from .sync_bn import from_global_bn, to_global_bn
from .distributed import EpochShardSampler, all_reduce_sum, barrier, is_main, rank_and_world

__all__ = ["finetune", "FinetuneOptions", "StepInfo", "distill_loss"]

@dataclass(frozen=True)
class StepInfo:
    """What a callback hears after each step: the loss and the top-1 agreement with the original
    on that step's batch (summed over every process), the learning rate used and, on the steps
    that measure it, fidelity on the held-out data (``validation``: :func:`~octify.fidelity`'s
    dict) with the step whose weights are the best so far (``best_step``, 0 for the start)."""

    step: int
    steps: int
    loss: float
    agreement: Optional[float]
    lr: float
    validation: Optional[dict] = None
    best_step: Optional[int] = None


def _probe(data: Any) -> Tensor:
    """One input of ``data`` (a Dataset's first sample as a batch of one, or the first batch)."""
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__") and not isinstance(data, torch.utils.data.IterableDataset):
        if len(data) == 0:
            raise OptionError("octify.finetune: the data holds no sample. Hint: check that the dataset is not empty.")
        x, _ = split_batch(data[0], "octify.finetune")
        return x.unsqueeze(0)
    for batch in data:
        return split_batch(batch, "octify.finetune")[0]
    raise OptionError("octify.finetune: the data gave no batch. Hint: check that the dataset or DataLoader is not empty.")


def _first(out: Any) -> Tensor:
    leaves = float_outputs(out)
    if not leaves:
        raise OptionTypeError(f"octify.finetune: expected the model to return floating-point Tensors, found {type(out).__name__}")
    return leaves[0]


def distill_loss(student: Tensor, teacher: Tensor, labels: Optional[Tensor], temperature: float, label_weight: float) -> Tensor:
    """T^2 KL(softmax(teacher/T) || softmax(student/T)) over the class dim (1), averaged per sample
    (and per pixel for dense outputs), plus ``label_weight`` x cross-entropy with ``labels``.

    >>> s = torch.randn(4, 10)
    >>> float(distill_loss(s, s, None, 4.0, 0.5))
    0.0
    """
    kl = kl_loss(student, teacher, temperature)
    if labels is None or label_weight == 0.0:
        return kl
    return kl + label_weight * F.cross_entropy(student.float(), labels)


def _precision(opts: FinetuneOptions, x: Tensor) -> Any:
    """bf16 autocast on the inputs' device when asked (the losses compute in float32)."""
    if not opts.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)


def _schedule(opts: FinetuneOptions) -> Callable[[int], float]:
    warm = int(round(opts.warmup * opts.steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        span = max(1, opts.steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / span))

    return factor


def _optimizer(model: nn.Module, opts: FinetuneOptions) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OptionError("octify.finetune: the converted model has no trainable parameter. Hint: check requires_grad.")
    if opts.optimizer == "sgd":
        return torch.optim.SGD(params, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay, nesterov=opts.momentum > 0)
    return torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)


def _stream(data: Any, opts: FinetuneOptions, epoch: int, offset: int, held: int = 0) -> Iterator[Tuple[int, int, Any]]:
    """(epoch, batch index in the epoch, batch) forever from ``(epoch, offset)``: a Dataset through
    a seeded shard sampler, any other iterable of batches as it comes (skipping what was used)."""
    rank, world = rank_and_world()
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__len__") and not isinstance(data, torch.utils.data.IterableDataset):
        if opts.batch_size % world:
            raise OptionError(f"octify.finetune: batch_size {opts.batch_size} is the global batch and must divide among {world} processes")
        per = opts.batch_size // world
        if len(data) < opts.batch_size:
            given = f"{len(data) + held} samples, {len(data)} after {held} held out for validation" if held else f"{len(data)} samples"
            raise OptionError(f"octify.finetune: the dataset has {given}, fewer than one batch of {opts.batch_size}")
        while True:
            sampler = EpochShardSampler(len(data), per, opts.seed, epoch, rank, world, skip=offset)
            # Its own generator: a DataLoader draws a seed from the global one per epoch, which
            # would shift the dropout draws of a resumed run against an uninterrupted one.
            loader = torch.utils.data.DataLoader(data, batch_size=per, sampler=sampler, drop_last=True, generator=torch.Generator())
            for i, batch in enumerate(loader, start=offset):
                yield epoch, i, batch
            epoch, offset = epoch + 1, 0
    while True:
        n = 0
        for i, batch in enumerate(data):
            n += 1
            if i >= offset:
                yield epoch, i, batch
        if n == 0:
            raise OptionError("octify.finetune: the data gave no batch. Hint: check that the dataset or DataLoader is not empty.")
        epoch, offset = epoch + 1, 0


def finetune(
    original: nn.Module,
    converted: nn.Module,
    data: Union[Iterable[Any], torch.utils.data.Dataset],
    *,
    steps: int,
    validation: Optional[Union[Iterable[Any], torch.utils.data.Dataset]] = None,
    callback: Optional[Callable[[StepInfo], None]] = None,
    inplace: bool = False,
    **options: Any,
) -> nn.Module:
    """Train ``converted`` to reproduce ``original`` on ``data`` for ``steps`` optimizer steps and
    return it (a copy unless ``inplace=True``; ``original`` is never changed).

    ``data`` is a Dataset of (input, label) or input samples (batched by ``batch_size``, the
    global batch, in a seeded order) or any iterable of batches (a DataLoader, a list), cycled
    through as needed. The loss is :func:`distill_loss` against the original's outputs; the
    other options (``lr``, ``optimizer``, ``momentum``, ``weight_decay``, ``warmup``,
    ``temperature``, ``label_weight``, ``batch_size``, ``seed``, ``checkpoint``,
    ``checkpoint_every``, ``resume``, ``sync_bn``, ``keep_best``, ``eval_every``, ``holdout``) are
    :class:`FinetuneOptions`'.

    ``features`` adds feature distillation on top of the output loss: ``"auto"`` (the end of each
    stage that runs octave layers, e.g. ``layer1``-``layer4`` of a ResNet) or module names of the
    original; each such module's output is compared with the converted model's value there,
    merged to the original's channels, by variance-scaled MSE, averaged and weighed by
    ``feature_weight`` (``tune/features.py``). ``augment=True`` trains on random resized crops and
    flips of the images (``tune/augment.py``), for small sets; ``bf16=True`` runs both models under
    bfloat16 autocast (the weights stay float32).

    The run never ends worse than it started on held-out data: fidelity to the original is
    measured on ``validation`` (or, when it is not given and ``data`` is a Dataset, on a seeded
    ``holdout`` share of it, 10% by default, kept out of training) before the first step and every
    ``eval_every`` steps (a tenth of the run by default), and the weights that measured best are
    the ones returned -- by agreement for class scores (``keep_best="auto"``; the relative error
    breaks ties and decides for other outputs), or ``"agreement"``, ``"rel_error"``,
    ``"accuracy"`` (labels needed), or ``"last"`` for the last weights whatever they measure.
    ``octify.record_of(result).finetune`` holds every measurement and the step whose weights were
    kept (when the model came from ``octify.convert``); the callback hears them as they come.

    With ``checkpoint`` a path, the state is saved every ``checkpoint_every`` steps and at the end,
    and a run started with the same path resumes from it (``resume=True``) to the same weights an
    uninterrupted run reaches. Under ``torchrun`` (a process group initialised) the model runs
    in DistributedDataParallel, each process taking its share of every global batch, rank 0
    saving; batch norms normalise over the global batch (``sync_bn=True``, the default, on any
    device: ``tune/sync_bn.py``), so that K processes compute what one would, or over each
    process's share with ``sync_bn=False`` (their running statistics averaged at the end).

    >>> import torch, octify
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
    ...                           torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    >>> oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16))
    >>> data, held = [torch.randn(8, 3, 16, 16) for _ in range(4)], [torch.randn(32, 3, 16, 16)]
    >>> before = octify.fidelity(net, oct_net, held)["rel_error"]
    >>> tuned = octify.finetune(net, oct_net, data, steps=40, lr=0.05, validation=held, keep_best="rel_error")
    >>> octify.fidelity(net, tuned, held)["rel_error"] < before
    True
    >>> octify.record_of(tuned).finetune["measure"], octify.record_of(tuned).finetune["history"][0]["step"]
    ('rel_error', 0)
    """
    check_module(original, "octify.finetune: original")
    check_module(converted, "octify.finetune: converted")
    opts = FinetuneOptions(steps=steps, **options)
    if isinstance(data, Tensor):
        raise OptionTypeError("octify.finetune: expected a Dataset or an iterable of batches, found one Tensor. Hint: pass [tensor].")
    if isinstance(validation, Tensor):
        raise OptionTypeError("octify.finetune: validation: expected a Dataset or an iterable of batches, found one Tensor. Hint: pass [tensor].")
    held_from = "none (keep_best='last')" if opts.keep_best == "last" else "given (validation=)"
    held = 0
    if validation is None and opts.keep_best != "last":
        data, validation, held_from = split_validation(data, opts.holdout, opts.seed)
        held = len(validation) if validation is not None else 0
    rank, world = rank_and_world()
    # The loss of each output, decided on what the original returns for one input.
    with eval_mode(original):
        probe = to_device(_probe(validation if validation is not None else data), original)
        loss_fn = OutputLoss.for_model(opts.loss, opts.temperature, original, probe)
    keeper = None
    if validation is not None and opts.keep_best != "last":
        keeper = BestKeeper(original, validation, opts.keep_best, max(1, opts.batch_size // world), loss_fn.keep_measure)
    student = converted if inplace else copy.deepcopy(converted)
    was_training = student.training
    if opts.sync_bn and world > 1:
        to_global_bn(student)  # normalise over the global batch, as one process would
    torch.manual_seed(opts.seed + rank)
    random.seed(opts.seed + rank)
    optimizer = _optimizer(student, opts)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(opts))
    step, epoch, offset = 0, 0, 0
    ckpt = Path(opts.checkpoint) if opts.checkpoint is not None else None
    state = load_checkpoint(ckpt) if ckpt is not None and opts.resume else None
    if state is not None:
        check_same_run(state.get("options", {}), opts, ckpt)
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, offset = state["step"], state["epoch"], state["offset"]
        torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        if keeper is not None and state.get("best") is not None:
            keeper.load_state_dict(state["best"])
    if world > 1:
        barrier()  # every rank has read the checkpoint before rank 0 may overwrite it
    if keeper is not None and not keeper.history:
        with eval_mode(student):  # every rank measures alike, so every rank keeps the same weights
            keeper.observe(student, 0)
    taps = FeatureTaps(original, student, opts.features, "octify.finetune") if opts.features is not None else None
    net: nn.Module = student if taps is None else taps.student
    if taps is not None:
        taps.student.merges.to(device_of(student))
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    student.train()
    stream = _stream(data, opts, epoch, offset, held)
    every = opts.evaluations()
    try:
        with eval_mode(original):
            while step < opts.steps:
                epoch, index, batch = next(stream)
                x, y = split_batch(batch, "octify.finetune")
                x, y = to_device(x, student), to_device(y, student)
                if opts.augment:
                    x = augment_batch(x)
                with torch.no_grad(), _precision(opts, x):
                    teacher_out = original(x)
                    teacher_feats = taps.teacher_values() if taps is not None else []
                with _precision(opts, x):
                    out_all = net(x)
                out_all, feats = out_all if taps is not None else (out_all, [])
                out, teacher = _first(out_all), _first(teacher_out)
                scores = loss_fn.scores if loss_fn.scores is not None else out.dim() >= 2  # a custom loss: as the outputs look
                loss = loss_fn(out_all, teacher_out)
                if taps is not None and opts.feature_weight:
                    loss = loss + opts.feature_weight * taps.loss(feats, teacher_feats)
                if scores and opts.label_weight and y is not None and y.shape == out.argmax(1).shape:
                    loss = loss + opts.label_weight * F.cross_entropy(out.float(), y)
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():
                    # DDP's buckets are contiguous, the converted model's 4-D weights channels-last: the
                    # reducer copies those gradients and says so on every step (its words: "not an error").
                    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
                    loss.backward()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                step, offset = step + 1, index + 1
                agree = (float((out.detach().argmax(1) == teacher.argmax(1)).sum()), float(teacher.argmax(1).numel())) if scores else (0.0, 0.0)
                stats = all_reduce_sum(torch.tensor([loss.item(), *agree], dtype=torch.float64))
                measured = None
                if keeper is not None and (step % every == 0 or step == opts.steps):
                    with eval_mode(student):
                        measured = keeper.observe(student, step)
                if ckpt is not None and (step == opts.steps or (opts.checkpoint_every and step % opts.checkpoint_every == 0)):
                    save_run(ckpt, student, optimizer, scheduler, step, epoch, offset, opts, keeper)
                if callback is not None and is_main():
                    callback(StepInfo(step, opts.steps, stats[0].item() / world, stats[1].item() / stats[2].item() if stats[2].item() else None, lr,
                                      measured, keeper.best_step if keeper is not None else None))
    finally:
        if taps is not None:
            taps.close()
    if keeper is not None:
        keeper.restore(student)
    student.train(was_training)
    if world > 1:
        if opts.sync_bn:
            from_global_bn(student)
        else:
            _average_bn_statistics(student, world)
    _record(student, opts, keeper, held_from, loss_fn, taps)
    return student


def _record(
    student: nn.Module, opts: FinetuneOptions, keeper: Optional[BestKeeper], held_from: str, loss_fn: OutputLoss, taps: Optional[FeatureTaps]
) -> None:
    """What the run did, in the conversion record of a converted model (other modules have none)."""
    try:
        record = record_of(student)
    except ValueError:
        return
    summary = keeper.summary() if keeper is not None else {"measure": None, "best_step": None, "history": []}
    kept = "last" if keeper is None or keeper.best_step == opts.steps else "best"
    record.finetune = {
        "steps": opts.steps, "kept": kept, "validation": held_from, "loss": loss_fn.describe(),
        "features": list(taps.names) if taps is not None else [], "feature_weight": opts.feature_weight if taps is not None else 0.0,
        "augment": opts.augment, "bf16": opts.bf16, **summary,
    }


def _average_bn_statistics(model: nn.Module, world: int) -> None:
    """Each process's batch norms saw only its share of the data: the mean of their running
    statistics, so that every rank returns the same model."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                for buf in (m.running_mean, m.running_var):
                    buf.copy_(all_reduce_sum(buf.clone()) / world)
