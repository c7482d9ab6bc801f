"""The conventions every report states, the JSON envelope, and rendering (report-only)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..utils.conventions import CONVENTIONS, POINTER, header_text
from ..utils.formatting import div, nbytes, ratio, shape, shapes, si, to_text

__all__ = [
    "SCHEMA_VERSION", "CONVENTIONS", "POINTER", "header_text", "inputs_text", "envelope", "Renderable",
    "si", "nbytes", "ratio", "div", "shape", "shapes", "to_text",
]

SCHEMA_VERSION = 1

def inputs_text(inputs: List[Dict[str, Any]], batch: Optional[int]) -> str:
    parts = ", ".join(f"{shape(d['shape'])} {d['dtype']}" for d in inputs)
    return parts + (f" (batch {batch})" if batch is not None else "")


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
    """render() and str() for the report objects: the summary, and with ``layers=True`` the
    per-layer table after it."""

    def render(self, console: Any = None, *, layers: bool = False) -> None:
        """Print the report on ``console`` (default: a new rich Console)."""
        if console is None:
            from rich.console import Console

            console = Console()
        console.print(self)
        if layers:
            console.print(self.layer_table())  # type: ignore[attr-defined]

    def __str__(self) -> str:
        return to_text(self)
