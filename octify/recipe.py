"""The saved format: one ``.safetensors`` file, the weights plus a JSON recipe in its header.

The file is a standard safetensors file (any safetensors tool reads it): the model's full
state_dict, and under the header metadata key ``"octify.recipe"`` a JSON object that says how to
make the model again from its original, without running anything stored in the file:

- ``format``: ``"octify/1"``; ``versions``: octify's and torch's at save time;
- ``spec`` and ``model_args``: how the original was obtained (``torchvision:resnet50``,
  ``timm:NAME``, ``file.py:NAME`` and its constructor arguments), when the caller said;
- ``record``: the conversion record (``ConversionRecord.to_dict()``: its plan replays the
  conversion), None for a model octify did not convert;
- ``freeze``: ``octify.freeze``'s settings for a frozen model, else None;
- ``training``: the names of the submodules in training mode;
- ``structure``: :func:`structure_hash` of the saved model, checked against the model rebuilt.

:mod:`octify.io` writes and reads it (``octify.save``, ``octify.load``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.fx as fx
from torch import nn

__all__ = [
    "FORMAT", "RECIPE_KEY", "PICKLE_SUFFIXES", "structure_hash", "state_tensors", "write_file", "file_kind", "read_recipe",
    "first_difference", "encode_args", "decode_args", "versions",
]

FORMAT = "octify/1"
RECIPE_KEY = "octify.recipe"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl")
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def versions() -> Dict[str, str]:
    """octify's and torch's versions."""
    from . import __version__ as octify_version

    return {"octify": octify_version, "torch": torch.__version__}


def structure_hash(model: nn.Module) -> str:
    """sha256 of what makes ``model`` the network it is, apart from the values of its weights:
    every submodule's name, type name and ``extra_repr()``, every GraphModule's generated code, and
    the state_dict's keys, shapes and dtypes.

    >>> import torch
    >>> a, b = torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(3, 8, 3)
    >>> structure_hash(a) == structure_hash(b), structure_hash(a) == structure_hash(torch.nn.Conv2d(3, 8, 5))
    (True, False)
    """
    h = hashlib.sha256()

    def put(*parts: str) -> None:
        h.update(("\x1f".join(parts) + "\x1e").encode("utf-8"))

    for name, m in model.named_modules():
        put("module", name, "GraphModule" if isinstance(m, fx.GraphModule) else type(m).__name__, m.extra_repr())
        if isinstance(m, fx.GraphModule):
            put("code", name, m.code)
    for key, t in model.state_dict().items():
        put("tensor", key, "x".join(map(str, t.shape)), str(t.dtype))
    return h.hexdigest()


def state_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The full state_dict as safetensors takes it: each tensor detached, on the CPU, contiguous
    and owning its storage (tied weights and views cloned)."""
    out: Dict[str, torch.Tensor] = {}
    seen: set = set()
    for key, t in model.state_dict(keep_vars=False).items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"octify.save: state_dict entry {key!r} is a {type(t).__name__}: expected tensors only")
        if t.dtype not in _ST_DTYPES:
            raise TypeError(f"octify.save: {key} is a {t.dtype} tensor: expected one of the dtypes safetensors stores "
                            f"({', '.join(str(d).replace('torch.', '') for d in _ST_DTYPES)})")
        t = t.detach().cpu().contiguous()
        storage = t.untyped_storage()
        if t.numel() and (storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def write_file(path: Path, tensors: Dict[str, torch.Tensor], recipe: dict) -> None:
    """Write the safetensors file atomically (a temp file beside ``path``, then renamed)."""
    from safetensors.torch import save_file

    text = json.dumps(recipe, default=_json_default, allow_nan=True)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={RECIPE_KEY: text})
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # mkstemp creates 0600 files; give the saved model the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    except OSError:  # pragma: no cover
        pass


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "__float__"):
        return float(value)
    return str(value)


def file_kind(path: Path) -> str:
    """"safetensors", "pickle" (torch.save's zip or legacy format, any pickle) or "other", from the
    first bytes: a safetensors file starts with its header's length (8 bytes, little-endian) and ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "pickle"
    return "other"


def read_recipe(path: Path) -> dict:
    """The recipe of an octify file (checked for its format); ValueError for a safetensors file
    without one, or one octify cannot read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 -- safetensors' errors name the damage
        raise ValueError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e}): expected a file written by octify.save") from None
    text = meta.get(RECIPE_KEY)
    if text is None:
        raise ValueError(
            f"{path} is a safetensors file without an octify recipe: expected a file written by octify.save. "
            "Hint: for bare weights, model.load_state_dict(safetensors.torch.load_file(path))"
        )
    try:
        recipe = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: its octify recipe is not valid JSON ({e}): the file is damaged or was edited") from None
    found = recipe.get("format") if isinstance(recipe, dict) else None
    if found != FORMAT:
        raise ValueError(
            f"{path} has a recipe of format {found!r}: expected {FORMAT!r}. Hint: a newer octify wrote it? "
            f"(it says {recipe.get('versions') if isinstance(recipe, dict) else None})"
        )
    for key, kind in (("training", list), ("structure", str)):
        if not isinstance(recipe.get(key), kind):
            raise ValueError(f"{path}: its recipe's {key!r} is {recipe.get(key)!r}, expected a {kind.__name__}: the file is damaged or was edited")
    return recipe


def first_difference(path: Path, model: nn.Module) -> Optional[str]:
    """The first tensor of the file whose name, shape or dtype the model's state_dict does not
    have, in words; None when all agree."""
    from safetensors import safe_open

    want = model.state_dict()
    with safe_open(str(path), "pt") as f:
        have = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    for key, t in want.items():
        if key not in have:
            return f"{key} is not in the file"
        shape, dtype = have[key]
        if shape != tuple(t.shape) or dtype != _ST_DTYPES.get(t.dtype):
            return (f"{key} is {'x'.join(map(str, shape)) or 'a scalar'} {dtype} in the file, "
                    f"{'x'.join(map(str, t.shape)) or 'a scalar'} {_ST_DTYPES.get(t.dtype, t.dtype)} in the model rebuilt")
    extra = [k for k in have if k not in want]
    return f"the file has {extra[0]}, which the model rebuilt has not" if extra else None


def encode_args(args: Optional[dict]) -> Dict[str, Any]:
    """Constructor arguments as JSON: values that JSON keeps as they are, others as ``{"python": repr}``."""
    out: Dict[str, Any] = {}
    for k, v in (args or {}).items():
        try:
            same = json.loads(json.dumps(v)) == v and type(json.loads(json.dumps(v))) is type(v)
        except (TypeError, ValueError):
            same = False
        out[str(k)] = v if same else {"python": repr(v)}
    return out


def decode_args(args: Optional[dict]) -> Dict[str, Any]:
    """The inverse of :func:`encode_args` (``{"python": repr}`` read with ``ast.literal_eval``, no code run)."""
    out: Dict[str, Any] = {}
    for k, v in (args or {}).items():
        if isinstance(v, dict) and set(v) == {"python"}:
            try:
                v = ast.literal_eval(v["python"])
            except (ValueError, SyntaxError):
                raise ValueError(f"model_args[{k!r}] = {v['python']!r} is not a Python literal") from None
        out[k] = v
    return out
