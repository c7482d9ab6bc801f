"""What running a model for a measurement needs: its device, device synchronisation and values caught by hooks."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence

import torch
from torch import nn

__all__ = ["device_of", "sync", "module_values"]


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a model without any)."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs asynchronously; a CPU has nothing queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def module_values(model: nn.Module, modules: Mapping[str, nn.Module], inputs: Sequence[Any], *, inputs_of: bool = False) -> Dict[str, Any]:
    """{name: what each of ``modules`` returned (or, with ``inputs_of``, its positional
    arguments)} at its first call while ``model(*inputs)`` runs without gradients; the hooks are
    removed however the run ends."""
    seen: Dict[str, Any] = {}
    if inputs_of:
        hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: seen.setdefault(name, args)) for name, m in modules.items()]
    else:
        hooks = [m.register_forward_hook(lambda mod, args, out, name=name: seen.setdefault(name, out)) for name, m in modules.items()]
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen
