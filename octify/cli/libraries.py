"""MODEL by library name: ``torchvision:NAME`` (a ``torchvision.models`` builder) and ``timm:NAME``
(``timm.create_model``), always with random weights (nothing is downloaded), constructor
arguments from ``--model-arg``."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Dict

from .console import LoadError, SpecError, describe_exception

__all__ = ["from_torchvision", "from_timm"]


def _args_text(kwargs: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def from_torchvision(name: str, kwargs: Dict[str, Any]) -> tuple[Any, str, str]:
    """(model, canonical name, source in words)."""
    import torchvision.models as tvm

    known = tvm.list_models()
    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""
        raise SpecError(
            f"unknown torchvision model '{name}': expected one of the {len(known)} names of "
            f"torchvision.models.list_models() (resnet50, mobilenet_v2, ...).{hint}"
        ) from None
    args: Dict[str, Any] = {"weights": None, **kwargs}
    if "weights_backbone" in inspect.signature(builder).parameters:
        args.setdefault("weights_backbone", None)  # detection models: never download a backbone
    if args["weights"] is not None or args.get("weights_backbone") is not None:
        raise SpecError("--model-arg weights=...: octify builds models with random weights (nothing is downloaded). Hint: pass your weights with --weights CKPT.")
    try:
        model = builder(**args)
    except TypeError as e:
        raise SpecError(f"torchvision:{name} does not take these arguments ({_args_text(kwargs)}): {describe_exception(e)}") from e
    except Exception as e:
        raise LoadError(f"building torchvision:{name} failed: {describe_exception(e)}") from e
    canonical = builder.__name__
    extra = f", {_args_text(kwargs)}" if kwargs else ""
    return model, canonical, f"torchvision:{canonical} (weights=None{extra})"


def from_timm(name: str, kwargs: Dict[str, Any]) -> tuple[Any, str, str]:
    """(model, name, source in words): ``timm.create_model(name, pretrained=False, **kwargs)``."""
    try:
        import timm
    except ImportError:
        raise LoadError(
            f"timm:{name} needs timm, which is not installed. Hint: pip install timm "
            "(or octify's models extra: pip install 'octify[models]')."
        ) from None
    if kwargs.get("pretrained"):
        raise SpecError("--model-arg pretrained=True: octify builds models with random weights (nothing is downloaded). Hint: pass your weights with --weights CKPT.")
    if not timm.is_model(name):
        known = timm.list_models()
        close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise SpecError(f"unknown timm model '{name}': expected one of the {len(known)} names of timm.list_models() (resnet50, efficientnet_b0, ...).{hint}")
    args = {k: v for k, v in kwargs.items() if k != "pretrained"}
    try:
        model = timm.create_model(name, pretrained=False, **args)
    except TypeError as e:
        raise SpecError(f"timm:{name} does not take these arguments ({_args_text(args)}): {describe_exception(e)}") from e
    except Exception as e:
        raise LoadError(f"building timm:{name} failed: {describe_exception(e)}") from e
    extra = f", {_args_text(args)}" if args else ""
    return model, name, f"timm:{name} (pretrained=False{extra})"
