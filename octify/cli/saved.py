"""The converted model a command is given (``octify finetune MODEL CONVERTED.pt``), checked for
what people pass instead: a state_dict, a plain model, the two arguments swapped, or an original
that is not the model CONVERTED was made from. Each mistake is a usage error that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import torch
from torch import nn

from ..io import load
from ..record import ConversionRecord, record_of, recorded_inputs
from .console import one_line, usage

__all__ = ["load_converted", "check_swapped", "check_made_from"]

_SWAPPED = "Hint: MODEL (the original) comes first, then CONVERTED.pt: octify finetune MODEL CONVERTED.pt --weights CKPT --data DIR."


def _converted_record(path: str) -> Optional[ConversionRecord]:
    """The conversion record of the model saved at ``path``; None when it holds anything else."""
    p = Path(path)
    if p.suffix not in (".pt", ".pth", ".pkl") or not p.is_file():
        return None
    try:
        return record_of(load(p, map_location="cpu"))
    except Exception:  # not a model, not loadable, or a plain model: not a converted one
        return None


def check_swapped(model_spec: str, converted_path: str) -> None:
    """Refuse MODEL when it is a converted model (the arguments swapped, or two converted files)."""
    if _converted_record(model_spec) is not None:
        raise usage(f"MODEL {model_spec} is a model converted by octify: expected the original model "
                    f"(file.py:NAME, torchvision:NAME, timm:NAME or a saved plain model). {_SWAPPED}")


def load_converted(path: str, model_spec: str) -> tuple[nn.Module, ConversionRecord]:
    """The model octify convert saved at ``path``, and its record."""
    p = Path(path)
    if not p.is_file():
        looks_like_model = p.suffix == ".py" or ":" in path or _converted_record(model_spec) is not None
        raise usage(f"CONVERTED.pt {path}: no such file (expected a converted model saved by octify convert)."
                    + (f" {_SWAPPED}" if looks_like_model else ""))
    try:
        converted = load(p, map_location="cpu")
    except TypeError as e:  # a state_dict, or another object that is not a module
        raise usage(f"CONVERTED.pt {one_line(str(e)).split(' For a state_dict')[0]} Hint: pass the file octify convert wrote "
                    "(octify convert MODEL --weights CKPT -o CONVERTED.pt); a state_dict goes to --weights, for MODEL.") from None
    except Exception as e:
        raise usage(f"CONVERTED.pt {path}: cannot be read as a saved model: {type(e).__name__}: {one_line(str(e))[:200]}") from None
    try:
        record = record_of(converted)
    except ValueError as e:
        raise usage(f"CONVERTED.pt {path}: {one_line(str(e))} Hint: octify convert MODEL -o CONVERTED.pt first.") from None
    return converted, record


def _shapes(out: Any) -> List[tuple]:
    leaves = out if isinstance(out, (tuple, list)) else list(out.values()) if isinstance(out, dict) else [out]
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in leaves]


def check_made_from(original: nn.Module, converted: nn.Module, model_spec: str, converted_path: str) -> None:
    """Run both on the converted model's recorded example input: outputs of another structure or
    shape mean MODEL is not the model CONVERTED was made from."""
    x = recorded_inputs(converted)
    if x is None:
        return
    with torch.no_grad():
        try:
            want = _shapes(original(*x))
        except Exception as e:
            raise usage(f"MODEL {model_spec} fails on the input CONVERTED.pt was converted for ({', '.join(str(tuple(t.shape)) for t in x)}): "
                        f"{type(e).__name__}: {one_line(str(e))[:200]}. Hint: is MODEL the model {converted_path} was made from?") from None
        got = _shapes(converted(*x))
    if want != got:
        raise usage(f"MODEL {model_spec} outputs {want} where {converted_path} outputs {got} on the same input: they are not the "
                    f"same network. Hint: is MODEL the model {converted_path} was made from (with the same --model-arg)?")
