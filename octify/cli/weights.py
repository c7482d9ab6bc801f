"""``--weights CKPT``: a state_dict, or a checkpoint dict holding one, loaded into the model."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .loading import LoadError, SpecError, describe_exception

__all__ = ["load_weights"]

_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def load_weights(model: nn.Module, ckpt: str) -> str:
    """Load a state_dict, or a checkpoint dict holding one, into ``model``; returns a description."""
    p = Path(ckpt)
    if not p.exists():
        raise SpecError(f"no such checkpoint file: {ckpt} (expected a state_dict saved with torch.save(model.state_dict(), path)).")
    if p.is_dir():
        raise SpecError(f"--weights {ckpt} is a directory: expected a checkpoint file.")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise LoadError(
                f"{ckpt} holds Python objects other than tensors, and is not loaded with weights_only=False for safety. "
                f"Hint: re-save it with torch.save(model.state_dict(), path)."
            ) from e
        raise LoadError(f"cannot read checkpoint {ckpt}: {text}") from e

    where = ""
    state = obj
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in _STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                state, where = obj[key], f"['{key}']"
                break
        else:
            keys = ", ".join(map(str, list(obj)[:8])) + (", ..." if len(obj) > 8 else "")
            raise LoadError(
                f"{ckpt} holds a dict with keys {keys}: expected a state_dict, or a checkpoint with one under "
                f"{', '.join(repr(k) for k in _STATE_DICT_KEYS)}."
            )
    if not isinstance(state, Mapping) or not _is_state_dict(state):
        raise LoadError(f"{ckpt}{where} holds a {type(state).__name__}: expected a state_dict (a dict of tensors).")

    state = dict(state)
    expected = model.state_dict()
    for prefix in ("module.", "_orig_mod."):  # DataParallel / torch.compile wrappers
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
            state = {k[len(prefix):]: v for k, v in state.items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key{'s' * (len(missing) != 1)} ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key{'s' * (len(unexpected) != 1)} ({_few(unexpected)})")
        raise LoadError(
            f"the weights in {ckpt}{where} do not fit the model: {' and '.join(parts)}. "
            f"Hint: check that MODEL builds the same architecture the checkpoint was trained with."
        )
    for k, v in state.items():
        want = expected[k]
        if isinstance(v, torch.Tensor) and v.shape != want.shape:
            raise LoadError(
                f"the weights in {ckpt}{where} do not fit the model: {k} has shape {tuple(v.shape)} in the "
                f"checkpoint, {tuple(want.shape)} in the model."
            )
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise LoadError(f"loading {ckpt} into the model failed: {describe_exception(e)}") from e
    return f"{ckpt}{where} ({len(state)} tensors)"


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) for k in obj) and all(
        isinstance(v, torch.Tensor) for v in obj.values()
    )


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
