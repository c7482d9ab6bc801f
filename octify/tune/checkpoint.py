"""Fine-tuning checkpoints: everything a resumed run needs to continue exactly where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from dataclasses import asdict
from torch import nn

from .distributed import barrier, is_main, rank_and_world

__all__ = ["save_checkpoint", "load_checkpoint", "save_run", "saved_options", "check_same_run", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a run killed while saving leaves the last checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"octify_finetune": CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> Optional[Dict[str, Any]]:
    """The state saved at ``path``, or None when there is none yet; an error naming the file when
    it is not an octify fine-tuning checkpoint."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise ValueError(f"octify.finetune: cannot read the checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(state, dict) or state.get("octify_finetune") != CHECKPOINT_VERSION:
        raise ValueError(
            f"octify.finetune: expected a fine-tuning checkpoint written by octify.finetune, found {str(path)!r} holding "
            f"{type(state).__name__}. Hint: give a new checkpoint path, or resume=False to start over."
        )
    return state


_RUN_FIELDS = (
    "steps", "lr", "optimizer", "momentum", "weight_decay", "warmup", "temperature", "label_weight", "batch_size", "seed", "sync_bn",
    "keep_best", "eval_every", "holdout", "loss", "features", "feature_weight", "augment", "bf16",
)


def saved_options(opts: Any) -> dict:
    """The options as a checkpoint keeps them: a callable loss by its name (functions do not pickle by value)."""
    out = asdict(opts)
    if callable(opts.loss):
        out["loss"] = f"{getattr(opts.loss, '__module__', '')}.{getattr(opts.loss, '__qualname__', type(opts.loss).__name__)}"
    return out


def check_same_run(saved: dict, opts: Any, path: Path) -> None:
    """Resuming continues one run: a checkpoint of a run with other settings would silently mix two."""
    here = saved_options(opts)
    differ = [f"{f}={saved[f]!r} there, {here[f]!r} here" for f in _RUN_FIELDS if f in saved and saved[f] != here[f]]
    if differ:
        raise ValueError(
            f"octify.finetune: the checkpoint {str(path)!r} belongs to a run with other settings ({'; '.join(differ)}). "
            "Hint: give the same settings to resume it, another checkpoint path, or resume=False to start over."
        )


def save_run(
    path: Path, student: nn.Module, optimizer: Any, scheduler: Any, step: int, epoch: int, offset: int, opts: Any, keeper: Any,
) -> None:
    """Every rank's random state and rank 0's model, optimizer, schedule, position and best weights."""
    rank, world = rank_and_world()
    rng = torch.get_rng_state()
    if world > 1:  # rank 0 writes every rank's random state, so that each resumes with its own
        gathered = [torch.empty_like(rng) for _ in range(world)]
        torch.distributed.all_gather(gathered, rng)
        rngs = gathered
    else:
        rngs = [rng]
    if is_main():
        save_checkpoint(path, {
            "model": student.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "epoch": epoch, "offset": offset, "rng": rngs, "options": saved_options(opts),
            "best": keeper.state_dict() if keeper is not None else None,
        })
    barrier()
