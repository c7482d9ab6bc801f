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
    kind = _not_a_checkpoint(p)
    if kind is not None:
        raise SpecError(
            f"--weights {ckpt} is {kind}: expected a checkpoint written by torch.save (a state_dict, or a dict holding one). "
            "Hint: --weights takes the trained model's weights, e.g. torch.save(model.state_dict(), 'model.pth')."
        )
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
        raise SpecError(
            f"the weights in {ckpt}{where} do not fit the model: {' and '.join(parts)}. "
            f"Hint: check that MODEL builds the same architecture the checkpoint was trained with."
        )
    for k, v in state.items():
        want = expected[k]
        if isinstance(v, torch.Tensor) and v.shape != want.shape:
            raise SpecError(
                f"the weights in {ckpt}{where} do not fit the model: {k} has shape {tuple(v.shape)} in the "
                f"checkpoint, {tuple(want.shape)} in the model."
            )
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise LoadError(f"loading {ckpt} into the model failed: {describe_exception(e)}") from e
    return f"{ckpt}{where} ({len(state)} tensors)"


# What people pass as --weights by mistake, known by the file's first bytes.
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"\x93NUMPY", "a NumPy array file"),
)


def _not_a_checkpoint(p: Path) -> str | None:
    """What ``p`` is, in words, when it cannot be a file torch.save wrote (a zip archive, or a
    pickle for the legacy format); None when it may be one."""
    with open(p, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    if not head:
        return "empty"
    if head[8:9] == b"{":  # safetensors: the JSON header's length, then the header
        if _has_recipe(p):
            return "a model saved by octify (give it as MODEL; --weights takes a state_dict)"
        return "a safetensors file (not read by --weights; load it with safetensors.torch.load_file and torch.save the dict)"
    return "not a file torch.save wrote (it starts with " + repr(head[:4])[1:] + ")"


def _has_recipe(p: Path) -> bool:
    from ..recipe import read_recipe

    try:
        read_recipe(p)
    except ValueError:
        return False
    return True


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) for k in obj) and all(
        isinstance(v, torch.Tensor) for v in obj.values()
    )


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")
