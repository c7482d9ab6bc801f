"""Fine-tuning checkpoints: everything a resumed run needs to continue exactly where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "CHECKPOINT_VERSION"]

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
