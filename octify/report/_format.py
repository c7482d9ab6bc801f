"""Number formatting and the conventions every report states."""

from __future__ import annotations

import io
from typing import Any, Dict, List, Optional, Sequence

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


def si(n: Optional[float], unit: str = "") -> str:
    """1234567 -> '1.23 M'."""
    if n is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip() if isinstance(n, float) else f"{n} {unit}".rstrip()


def nbytes(n: Optional[int]) -> str:
    """Binary units: 1048576 -> '1.00 MiB'."""
    if n is None:
        return "-"
    for scale, prefix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{n} B"


def ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.3f}"


def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return a / b


def shape(s: Sequence[int]) -> str:
    return "x".join(str(d) for d in s)


def shapes(all_shapes: List[List[int]], calls: int) -> str:
    """The shapes of one call's outputs, '+'-joined, with 'xN calls' when the module ran N times."""
    if not all_shapes:
        return "-"
    per_call = max(1, len(all_shapes) // max(calls, 1))
    text = " + ".join(shape(s) for s in all_shapes[:per_call])
    return text + (f"  ({calls} calls)" if calls > 1 else "")


def inputs_text(inputs: List[Dict[str, Any]], batch: Optional[int]) -> str:
    parts = ", ".join(f"{shape(d['shape'])} {d['dtype']}" for d in inputs)
    return parts + (f" (batch {batch})" if batch is not None else "")


def header_text() -> str:
    c = CONVENTIONS
    return (
        f"MACs: {c['macs']}. FLOPs: {c['flops']}. Not counted: {c['not_counted']}. "
        f"Feature maps: {c['feature_map_bytes']}. Params: {c['params']}. Counting: {c['counting']}."
    )


def to_text(renderable: Any, width: int = 160) -> str:
    """Plain text of a rich renderable (no colour, no terminal codes)."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False).print(renderable)
    return buf.getvalue()


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
