"""The conventions every report states, the JSON envelope, and rendering (report-only)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..utils.formatting import div, nbytes, ratio, shape, shapes, si, to_text

__all__ = [
    "SCHEMA_VERSION", "CONVENTIONS", "header_text", "inputs_text", "envelope", "Renderable",
    "si", "nbytes", "ratio", "div", "shape", "shapes", "to_text",
]

SCHEMA_VERSION = 1

CONVENTIONS: Dict[str, str] = {
    "macs": "multiply-accumulates of conv, linear and matmul ops (the paper's 'FLOPs'); MACs = FLOPs / 2",
    "flops": "as torch.utils.flop_counter.FlopCounterMode counts them: 2 x MACs; bias additions not counted",
    "not_counted": "batch norm, activations, pooling, upsampling, adds, concatenation, copies (element-wise ops)",
    "feature_map_bytes": "bytes of every tensor each leaf module outputs (both branches of an octave pair), summed over calls",
    "params": "counted on the real model, sum(p.numel()); a shared parameter once, at its first layer",
    "counting": "shapes only, on fake tensors (torch._subclasses.FakeTensorMode): no real compute",
    "rows": "leaf modules (octify's octave layers count as leaves) in the order they first ran; '(other)' holds FLOPs outside any leaf module and parameters owned by containers",
}


def inputs_text(inputs: List[Dict[str, Any]], batch: Optional[int]) -> str:
    parts = ", ".join(f"{shape(d['shape'])} {d['dtype']}" for d in inputs)
    return parts + (f" (batch {batch})" if batch is not None else "")


def header_text() -> str:
    c = CONVENTIONS
    return (
        f"MACs: {c['macs']}. FLOPs: {c['flops']}. Not counted: {c['not_counted']}. "
        f"Feature maps: {c['feature_map_bytes']}. Params: {c['params']}. Counting: {c['counting']}."
    )


def envelope(kind: str, inputs: List[Dict[str, Any]], batch: Optional[int]) -> Dict[str, Any]:
    """The keys every to_dict() starts with: schema, kind, inputs and conventions."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "inputs": [dict(d, shape=list(d["shape"])) for d in inputs],
        "batch": batch,
        "conventions": dict(CONVENTIONS),
    }


class Renderable:
    """render() and str() for the report objects, both through their ``__rich__``."""

    def render(self, console: Any = None) -> None:
        """Print the report on ``console`` (default: a new rich Console)."""
        if console is None:
            from rich.console import Console

            console = Console()
        console.print(self)

    def __str__(self) -> str:
        return to_text(self)
