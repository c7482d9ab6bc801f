"""compare(): two profiles of the same inputs matched layer by layer, with the octave convs' theory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from torch import nn

from ..nn.octconv import OctConvNd
from ..nn.cost import conv_macs_ratio, octave_bytes_ratio
from ..utils.inputs import normalize_inputs
from ..utils.validate import check_module
from . import _format as fmt
from ._timing import check_timing_args, measure
from .profiling import LayerRow, Profile, build_profile, device_of, timing_console

__all__ = ["Comparison", "LayerPair", "ConvRow", "compare"]

_TOTALS = ("macs", "flops", "params", "feature_map_bytes")


@dataclass
class LayerPair:
    """A layer name with its row in each profile (None where the name is only on one side)."""

    name: str
    before: Optional[LayerRow]
    after: Optional[LayerRow]

    def _get(self, side: Optional[LayerRow], key: str) -> Optional[int]:
        return None if side is None else getattr(side, key)

    def ratio(self, key: str) -> Optional[float]:
        return fmt.div(self._get(self.after, key), self._get(self.before, key))

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {
            "name": self.name,
            "type_before": None if self.before is None else self.before.type,
            "type_after": None if self.after is None else self.after.type,
        }
        for key in _TOTALS:
            d[f"{key}_before"] = self._get(self.before, key)
            d[f"{key}_after"] = self._get(self.after, key)
            d[f"{key}_ratio"] = self.ratio(key)
        return d


@dataclass
class ConvRow:
    """One OctConv2d of the converted model beside the layer of the same name in the original."""

    name: str
    alpha_in: float
    alpha_out: float
    octave: int
    depthwise: bool
    macs_before: Optional[int]
    macs_after: Optional[int]
    theoretical_macs_ratio: float
    feature_map_bytes_before: Optional[int]
    feature_map_bytes_after: Optional[int]
    theoretical_feature_map_bytes_ratio: float

    @property
    def measured_macs_ratio(self) -> Optional[float]:
        return fmt.div(self.macs_after, self.macs_before)

    @property
    def measured_feature_map_bytes_ratio(self) -> Optional[float]:
        return fmt.div(self.feature_map_bytes_after, self.feature_map_bytes_before)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "alpha_in": self.alpha_in,
            "alpha_out": self.alpha_out,
            "octave": self.octave,
            "depthwise": self.depthwise,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "measured_macs_ratio": self.measured_macs_ratio,
            "theoretical_macs_ratio": self.theoretical_macs_ratio,
            "feature_map_bytes_before": self.feature_map_bytes_before,
            "feature_map_bytes_after": self.feature_map_bytes_after,
            "measured_feature_map_bytes_ratio": self.measured_feature_map_bytes_ratio,
            "theoretical_feature_map_bytes_ratio": self.theoretical_feature_map_bytes_ratio,
        }


@dataclass
class Comparison(fmt.Renderable):
    """``before`` (the original) and ``after`` (the converted model) on the same inputs."""

    before: Profile
    after: Profile
    layers: List[LayerPair] = field(default_factory=list)
    convs: List[ConvRow] = field(default_factory=list)

    def ratio(self, key: str) -> Optional[float]:
        """after / before of a total: 'macs', 'flops', 'params', 'feature_map_bytes' or 'latency'."""
        if key == "latency":
            if self.before.latency is None or self.after.latency is None:
                return None
            return fmt.div(self.after.latency.median_ms, self.before.latency.median_ms)
        if key not in _TOTALS:
            raise KeyError(f"no total named {key!r}; expected one of {', '.join(_TOTALS + ('latency',))}")
        return fmt.div(getattr(self.after, key), getattr(self.before, key))

    @property
    def ratios(self) -> Dict[str, Optional[float]]:
        return {k: self.ratio(k) for k in _TOTALS + ("latency",)}

    def layer(self, name: str) -> LayerPair:
        for pair in self.layers:
            if pair.name == name:
                return pair
        raise KeyError(f"no layer named {name!r} in this comparison")

    def to_dict(self) -> Dict[str, Any]:
        return {
            **fmt.envelope("octify.comparison", self.before.inputs, self.before.batch),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "ratios": self.ratios,
            "layers": [p.to_dict() for p in self.layers],
            "convs": [c.to_dict() for c in self.convs],
        }

    # -- rendering -------------------------------------------------------------------------
    def summary(self) -> Any:
        """The summary as a rich renderable: totals, the savings by stage, a pointer to the conventions."""
        from ._tables import comparison_summary

        return comparison_summary(self)

    def layer_table(self) -> Any:
        """Every layer with MACs, before and after, with each octave conv's alphas (``--layers``)."""
        from ._tables import comparison_layers

        return comparison_layers(self)

    def to_html(self, record: Any = None, fidelity: Optional[Dict[str, Any]] = None) -> str:
        """One self-contained HTML page (charts by stage and per conv; no network needed to view it).
        ``record``: ``octify.record_of(converted)``, to add what stayed plain, where the merges are
        and what calibration chose; ``fidelity``: ``octify.fidelity(original, converted, data)``."""
        from .html_page import comparison_html

        return comparison_html(self, record, fidelity)

    def __rich__(self) -> Any:
        return self.summary()


def _match(before: List[LayerRow], after: List[LayerRow]) -> List[LayerPair]:
    """Rows matched by name, in the original's order; names only in ``after`` follow the
    nearest preceding name they share."""
    b = {r.name: r for r in before}
    a = {r.name: r for r in after}
    order = [r.name for r in before]
    position = {n: i for i, n in enumerate(order)}
    inserted: Dict[int, List[str]] = {}
    anchor = -1
    for r in after:
        if r.name in position:
            anchor = position[r.name]
        else:
            inserted.setdefault(anchor, []).append(r.name)
    names = inserted.get(-1, [])[:]
    for i, n in enumerate(order):
        names.append(n)
        names.extend(inserted.get(i, []))
    return [LayerPair(n, b.get(n), a.get(n)) for n in names]


def _convs(converted: nn.Module, before: Profile, after: Profile) -> List[ConvRow]:
    b = {r.name: r for r in before.layers}
    a = {r.name: r for r in after.layers}
    rank = {r.name: i for i, r in enumerate(after.layers)}
    rows = []
    for name, module in converted.named_modules():
        if not isinstance(module, OctConvNd):
            continue
        rb, ra = b.get(name), a.get(name)
        rows.append(
            ConvRow(
                name=name,
                alpha_in=module.alpha_in,
                alpha_out=module.alpha_out,
                octave=module.octave,
                depthwise=module.depthwise,
                macs_before=None if rb is None else rb.macs,
                macs_after=None if ra is None else ra.macs,
                theoretical_macs_ratio=conv_macs_ratio(module),
                feature_map_bytes_before=None if rb is None else rb.feature_map_bytes,
                feature_map_bytes_after=None if ra is None else ra.feature_map_bytes,
                theoretical_feature_map_bytes_ratio=octave_bytes_ratio(module.alpha_out, module.octave, module._axes),
            )
        )
    rows.sort(key=lambda c: rank.get(c.name, len(rank)))
    return rows


def compare(
    original: nn.Module,
    converted: nn.Module,
    example_inputs: Any,
    *,
    latency: bool = False,
    threads: Optional[int] = None,
    runs: int = 20,
    warmup: int = 3,
    console: Any = None,
) -> Comparison:
    """Profile ``original`` and ``converted`` on the same inputs and match them layer by layer.

    Layers are matched by qualified module name (``octify.convert`` keeps the names of the
    convs and batch norms it replaces). For each OctConv2d of ``converted`` the comparison
    lists its (alpha_in, alpha_out) and its theoretical MACs ratio beside the measured one.
    With ``latency=True`` both models are timed in one process, alternated run by run.
    """
    who = "octify.compare"
    check_module(original, f"{who}: original")
    check_module(converted, f"{who}: converted")
    inputs = normalize_inputs(example_inputs, who)
    if latency:
        check_timing_args(runs, warmup, threads, who)
    before = build_profile(original, inputs, who)
    after = build_profile(converted, inputs, who)
    if latency:
        before.latency, after.latency = measure(
            [original, converted], inputs, device_of(inputs), runs=runs, warmup=warmup, threads=threads,
            console=timing_console(console),
        )
    return Comparison(before, after, _match(before.layers, after.layers), _convs(converted, before, after))
