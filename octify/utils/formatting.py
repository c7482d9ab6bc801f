"""Numbers and sizes as octify prints them: the report and the command line alike.

Counts use decimal SI prefixes with a capital K (``1.23 M``); bytes use binary units
(``1.00 MiB``), the units of the report's feature-map memory and of saved files.
"""

from __future__ import annotations

import io
from typing import Any, List, Optional, Sequence

__all__ = ["si", "nbytes", "ratio", "div", "shape", "shapes", "to_text"]


def si(n: Optional[float], unit: str = "") -> str:
    """1234567 -> '1.23 M'.

    >>> si(11689512), si(999), si(None)
    ('11.69 M', '999', '-')
    """
    if n is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip() if isinstance(n, float) else f"{n} {unit}".rstrip()


def nbytes(n: Optional[int]) -> str:
    """Binary units.

    >>> nbytes(1048576), nbytes(512)
    ('1.00 MiB', '512 B')
    """
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
    """(1, 3, 224, 224) -> '1x3x224x224'."""
    return "x".join(str(d) for d in s)


def shapes(all_shapes: List[List[int]], calls: int) -> str:
    """The shapes of one call's outputs, '+'-joined, with 'xN calls' when the module ran N times."""
    if not all_shapes:
        return "-"
    per_call = max(1, len(all_shapes) // max(calls, 1))
    text = " + ".join(shape(s) for s in all_shapes[:per_call])
    return text + (f"  ({calls} calls)" if calls > 1 else "")


def to_text(renderable: Any, width: int = 160) -> str:
    """Plain text of a rich renderable (no colour, no terminal codes)."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False).print(renderable)
    return buf.getvalue()
