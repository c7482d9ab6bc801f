"""The conventions every report states, the JSON envelope, and rendering (report-only)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..utils.conventions import CONVENTIONS, POINTER, header_text
from ..utils.formatting import div, nbytes, ratio, shape, shapes, si, to_text

__all__ = [
    "SCHEMA_VERSION", "CONVENTIONS", "POINTER", "header_text", "inputs_text", "envelope", "Renderable",
    "si", "nbytes", "ratio", "div", "shape", "shapes", "to_text", "calibration_text", "fidelity_text", "CALIBRATION_CANDIDATES",
]

SCHEMA_VERSION = 1

# The three conversions calibration compares (octify/tune/calibrate.py), in words.
CALIBRATION_CANDIDATES = {"measured": "measured split", "default": "default split", "uncalibrated": "uncalibrated"}


def calibration_text(cal: Dict[str, Any], samples: Optional[int]) -> str:
    """What calibration returned (``record.calibration``), and what it was compared with, in one line."""
    errors = cal["rel_error"]
    on = f" on {samples} samples" if samples else ""
    against = " and ".join(f"{e:.4f} ({CALIBRATION_CANDIDATES[k]})" for k, e in errors.items() if k != cal["chosen"])
    measured = f"rel. error {errors[cal['chosen']]:.4f} there, against {against}" if against else ""
    if cal["chosen"] == "uncalibrated":
        return f"Calibration did not help{on}, so the conversion is left uncalibrated: {measured}"
    split = f"measured low channels for {len(cal['assigned'])} convs" if cal["chosen"] == "measured" else "the default split"
    return f"Calibrated{on}: {split}, {cal['batch_norms_corrected']} batch norms corrected" + (f"; {measured}" if measured else "")


def reconstruction_text(rec: Dict[str, Any]) -> str:
    """What ``octify.reconstruct`` did (``record.reconstruction``), in one line."""
    change = f"rel. error {rec['rel_error_before']:.4f} -> {rec['rel_error_after']:.4f} there"
    if rec["kept"] != "reconstructed":
        return f"Reconstruction on {rec['samples']} samples did not help ({change}): the weights from before are kept"
    skipped = f" ({len(rec['skipped'])} octave layers it cannot fit kept as they were)" if rec["skipped"] else ""
    return f"Reconstructed {rec['layers']} octave layers on {rec['samples']} samples{skipped}: {change}"


def latency_plan_text(plan: Dict[str, Any]) -> str:
    """The measured latency plan (``record.latency_plan``): the choice per block and the curve, a few lines."""
    if "units" not in plan:
        return f"Latency plan: {plan['source']}: {plan['why']}"
    chosen = ", ".join(f"{u['unit']} {u['alpha']:g}" if u["alpha"] else f"{u['unit']} plain" for u in plan["units"])
    verified = f", measured {plan['verified_ratio']:.2f}x the plain model" if plan.get("verified_ratio") is not None else ""
    lines = [
        f"Latency plan ({plan['source']}, {plan['threads']} threads, inputs {', '.join('x'.join(map(str, s)) for s in plan['inputs'])}; "
        f"{plan['seconds']:.0f} s): {plan['why']}; blocks at {chosen}",
        f"  predicted {plan['predicted_ms']:.2f} ms of the blocks' {plan['plain_ms']:.2f} ms plain "
        f"({plan['predicted_ms'] / plan['plain_ms']:.2f}x){verified}" if plan["plain_ms"] else "  no block to time",
        "  trade-off (blocks' time against fidelity cost): " + "; ".join(
            f"{p['ms'] / plan['plain_ms']:.2f}x at {p['cost']:.3f} ({p['octave_units']} octave)" for p in plan["curve"]) if plan["plain_ms"] else "",
    ]
    return "\n".join(line for line in lines if line)


def fidelity_text(r: Dict[str, Any]) -> str:
    """One line of ``octify.fidelity``'s result."""
    text = f"Fidelity to the original on {r['samples']} samples: rel. error {r['rel_error']:.4f}"
    if r.get("agreement") is not None:
        text += f", top-1 agreement {r['agreement']:.2%}"
    if "accuracy" in r:
        text += f", accuracy {r['accuracy']:.2%} (original {r['original_accuracy']:.2%})"
    return text


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
