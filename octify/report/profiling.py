"""profile(): MACs, FLOPs, parameters and feature-map bytes of a model, per leaf module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..record import model_name
from ..utils.inputs import batch_of, describe, normalize_inputs, tensors_of
from ..utils.validate import check_module
from . import _format as fmt
from ._counting import count
from ._timing import Latency, check_timing_args, measure

__all__ = ["Profile", "LayerRow", "profile", "build_profile", "device_of", "timing_console"]


@dataclass
class LayerRow:
    """One leaf module (``name`` is its qualified name; '' for a model that is itself a leaf)."""

    name: str
    type: str
    calls: int
    output_shapes: List[List[int]]
    params: int
    macs: int
    flops: int
    feature_map_bytes: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "calls": self.calls,
            "output_shapes": [list(s) for s in self.output_shapes],
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "feature_map_bytes": self.feature_map_bytes,
        }


@dataclass
class Profile(fmt.Renderable):
    """What ``profile(model, example_inputs)`` measured. Totals equal the sums of ``layers``."""

    model: str
    inputs: List[Dict[str, Any]]
    batch: Optional[int]
    macs: int
    flops: int
    params: int
    feature_map_bytes: int
    layers: List[LayerRow] = field(default_factory=list)
    latency: Optional[Latency] = None

    def layer(self, name: str) -> LayerRow:
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"no layer named {name!r} in this profile of {self.model}")

    def to_dict(self) -> Dict[str, Any]:
        return {
            **fmt.envelope("octify.profile", self.inputs, self.batch),
            "model": self.model,
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "feature_map_bytes": self.feature_map_bytes,
            "latency": None if self.latency is None else self.latency.to_dict(),
            "layers": [r.to_dict() for r in self.layers],
        }

    # -- rendering -------------------------------------------------------------------------
    def summary(self) -> Any:
        """The summary as a rich renderable: totals, the work by stage, a pointer to the conventions."""
        from ._tables import profile_summary

        return profile_summary(self)

    def layer_table(self) -> Any:
        """Every layer with MACs or parameters (``--layers``)."""
        from ._tables import profile_layers

        return profile_layers(self)

    def to_html(self) -> str:
        """One self-contained HTML page (charts by stage and per conv; no network needed to view it)."""
        from .html_page import profile_html

        return profile_html(self)

    def __rich__(self) -> Any:
        return self.summary()


def device_of(inputs: Any) -> torch.device:
    """The device of the first input tensor: where timing runs."""
    return tensors_of(inputs)[0].device


def build_profile(model: nn.Module, inputs: Any, who: str) -> Profile:
    """The Profile of one counting run (no timing)."""
    raw = count(model, inputs, who)
    rows = [
        LayerRow(r.name, r.type, r.calls, r.output_shapes, r.params, r.flops // 2, r.flops, r.feature_map_bytes)
        for r in raw.rows
    ]
    return Profile(
        model=model_name(model),
        inputs=describe(inputs),
        batch=batch_of(inputs),
        macs=sum(r.macs for r in rows),
        flops=raw.flops,
        params=raw.params,
        feature_map_bytes=sum(r.feature_map_bytes for r in rows),
        layers=rows,
    )


def timing_console(console: Any) -> Any:
    """Where the timing progress bar goes: ``console``, or stderr."""
    if console is not None:
        return console
    from rich.console import Console

    return Console(stderr=True)


def profile(
    model: nn.Module,
    example_inputs: Any,
    *,
    latency: bool = False,
    threads: Optional[int] = None,
    runs: int = 20,
    warmup: int = 3,
    console: Any = None,
) -> Profile:
    """MACs, FLOPs, parameters and feature-map bytes of ``model(*example_inputs)``, per leaf module.

    ``example_inputs`` is a Tensor or a tuple of positional inputs (an OctConv2d alone takes
    ``((high, low),)``). Counting runs on fake tensors: no real compute, the model untouched.
    With ``latency=True`` the model also runs for real: the median of ``runs`` timed forward
    passes after ``warmup`` (eval mode, inference_mode, ``threads`` CPU threads, default: the
    current setting), with a progress bar on ``console`` when it is a terminal.

    >>> import torch
    >>> p = profile(torch.nn.Conv2d(3, 8, 3, padding=1), torch.randn(1, 3, 32, 32))
    >>> p.macs, p.flops, p.params      # 8*3*9*32*32 MACs, bias not counted
    (221184, 442368, 224)
    """
    who = "octify.profile"
    check_module(model, f"{who}: model")
    inputs = normalize_inputs(example_inputs, who)
    if latency:
        check_timing_args(runs, warmup, threads, who)
    result = build_profile(model, inputs, who)
    if latency:
        (result.latency,) = measure(
            [model], inputs, device_of(inputs), runs=runs, warmup=warmup, threads=threads, console=timing_console(console)
        )
    return result

