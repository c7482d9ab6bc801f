"""The printed report: a summary that fits 80 columns (totals, stages, what stayed plain) and the
per-layer tables behind ``--layers``. Layer names are never cut: a prefix every name shares goes
to the title, and a name too long for its column wraps.

Rendering only (rich); the numbers come from :class:`~.profiling.Profile` and
:class:`~.comparison.Comparison`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from . import _format as fmt
from ._stages import common_prefix, stages

__all__ = [
    "comparison_summary", "comparison_layers", "profile_summary", "profile_layers", "record_summary", "StageRow",
    "comparison_stage_rows", "is_conv", "is_octave",
]

# The report objects come in as arguments only (a Comparison, a Profile, their LayerPairs): this
# module renders them and never imports them, so that they can import it.

_SHOWN_NAMES = 6  # names listed per reason in the summary before "+N more"


def is_conv(type_name: Optional[str]) -> bool:
    """A conv layer, plain or octave, by its class name (Conv2d, OctConv2d, Conv3d, ...)."""
    return bool(type_name) and "Conv" in type_name and "Transpose" not in type_name  # type: ignore[operator]


def is_octave(type_name: Optional[str]) -> bool:
    return bool(type_name) and type_name.startswith("OctConv")  # type: ignore[union-attr]


_NAME_WIDTH = 20  # a name column may be narrowed to this when the numbers need the room; longer names then wrap


def _table(title: Optional[str] = None, **kw: Any) -> Table:
    return Table(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
        pad_edge=False, padding=(0, 1), collapse_padding=True, header_style="bold", **kw,
    )


def _name_column(table: Table, names: Sequence[str], header: str = "Layer", footer: str = "") -> None:
    # As wide as the longest name where the width allows (names are what the user looks for in
    # their code); else narrowed, and a long name folds onto the next line, never cut with an ellipsis.
    width = min(max([len(header), len(footer), *map(len, names)]), _NAME_WIDTH)
    table.add_column(header, overflow="fold", footer=footer, min_width=width)


def _num_column(table: Table, header: str, footer: str = "") -> None:
    table.add_column(header, justify="right", no_wrap=True, footer=footer)


def _title_with_prefix(title: str, prefix: str) -> str:
    return f"{title} (names under {prefix})" if prefix else title


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if prefix and name.startswith(prefix) else (name or "(model)")


# --------------------------------------------------------------------------------- comparison
def _totals(c: Any) -> Table:
    b, a = c.before, c.after
    table = _table()
    table.add_column("")
    for col in ("before", "after", "after/before"):
        _num_column(table, col)
    table.add_row("MACs", fmt.si(b.macs), fmt.si(a.macs), fmt.ratio(c.ratio("macs")))
    table.add_row("FLOPs", fmt.si(b.flops), fmt.si(a.flops), fmt.ratio(c.ratio("flops")))
    table.add_row("Params", fmt.si(b.params), fmt.si(a.params), fmt.ratio(c.ratio("params")))
    table.add_row("Feature maps", fmt.nbytes(b.feature_map_bytes), fmt.nbytes(a.feature_map_bytes), fmt.ratio(c.ratio("feature_map_bytes")))
    if b.latency is not None and a.latency is not None:
        table.add_row("Latency (median)", f"{b.latency.median_ms:.2f} ms", f"{a.latency.median_ms:.2f} ms", fmt.ratio(c.ratio("latency")))
    return table


def _sum(pairs: Iterable[Any], side: str, key: str) -> Optional[int]:
    values = [getattr(getattr(p, side), key) for p in pairs if getattr(p, side) is not None]
    return sum(values) if values else None


@dataclass
class StageRow:
    """One stage of a comparison, as the summary table and the HTML page show it."""

    label: str
    convs: int  # convs of the original in the stage
    octave: int  # octave convs of the converted model in it
    macs_before: Optional[int]
    macs_after: Optional[int]
    maps_before: Optional[int]
    maps_after: Optional[int]


def comparison_stage_rows(c: Any) -> List[StageRow]:
    """The stages of a Comparison (a module octify inserted joins the stage before it)."""
    by_name = {p.name: p for p in c.layers}
    rows = []
    for g in stages([(p.name, (p.before or p.after).macs) for p in c.layers]):
        pairs = [by_name[n] for n in g.names]
        rows.append(StageRow(
            g.label,
            sum(is_conv(p.before.type) for p in pairs if p.before is not None),
            sum(is_octave(p.after.type) for p in pairs if p.after is not None),
            _sum(pairs, "before", "macs"), _sum(pairs, "after", "macs"),
            _sum(pairs, "before", "feature_map_bytes"), _sum(pairs, "after", "feature_map_bytes"),
        ))
    return rows


def _stage_labels(labels: List[str]) -> Tuple[List[str], str]:
    """Labels without the prefix they all share ('a.b..a.c' loses it on both sides)."""
    prefix = common_prefix([part for label in labels for part in label.split("..")])
    if not prefix:
        return labels, ""
    return ["..".join(_strip(part, prefix) for part in label.split("..")) for label in labels], prefix


def _stage_table(c: Any) -> Table:
    rows = comparison_stage_rows(c)
    labels, prefix = _stage_labels([r.label for r in rows])
    table = _table(_title_with_prefix("By stage", prefix), show_footer=True)
    _name_column(table, labels, "Stage", footer="total")
    _num_column(table, "octave\nconvs", footer=f"{sum(r.octave for r in rows)}/{sum(r.convs for r in rows)}")
    _num_column(table, "MACs\nbefore", footer=fmt.si(c.before.macs))
    _num_column(table, "MACs\nafter", footer=fmt.si(c.after.macs))
    _num_column(table, "MACs\nratio", footer=fmt.ratio(c.ratio("macs")))
    _num_column(table, "maps\nratio", footer=fmt.ratio(c.ratio("feature_map_bytes")))
    for label, r in zip(labels, rows):
        table.add_row(
            escape(label), f"{r.octave}/{r.convs}" if r.convs else "-", fmt.si(r.macs_before), fmt.si(r.macs_after),
            fmt.ratio(fmt.div(r.macs_after, r.macs_before)), fmt.ratio(fmt.div(r.maps_after, r.maps_before)),
        )
    return table


def comparison_summary(c: Any) -> Group:
    b, a = c.before, c.after
    title = Text()
    title.append(f"{b.model} -> {a.model}", style="bold")
    title.append(f", input {fmt.inputs_text(b.inputs, b.batch)}")
    parts: List[Any] = [title, _totals(c)]
    if b.latency is not None and a.latency is not None:
        parts.append(Text(f"Latency: before {b.latency.spread()}, after {a.latency.spread()}; "
                          f"{a.latency.runs} runs each after {a.latency.warmup} warm-up, alternated, "
                          f"{a.latency.threads} thread{'s' * (a.latency.threads != 1)}, {a.latency.device}"))
    parts.append(_stage_table(c))
    parts.append(Text(fmt.POINTER, style="dim"))
    return Group(*parts)


def comparison_layers(c: Any) -> Group:
    """One row per layer with MACs (convs, linear layers), before and after."""
    shown = [p for p in c.layers if (p.before is not None and p.before.macs) or (p.after is not None and p.after.macs)]
    alphas = {r.name: r for r in c.convs}
    prefix = common_prefix([p.name for p in shown])
    table = _table(_title_with_prefix("Layers with MACs", prefix))
    _name_column(table, [_strip(p.name, prefix) for p in shown])
    table.add_column("type", no_wrap=True)
    table.add_column("alpha", no_wrap=True)
    _num_column(table, "MACs\nbefore")
    _num_column(table, "MACs\nafter")
    _num_column(table, "MACs\nratio")
    for p in shown:
        kind = (p.after or p.before).type  # type: ignore[union-attr]
        conv = alphas.get(p.name)
        table.add_row(
            escape(_strip(p.name, prefix)), kind, f"{conv.alpha_in:g}/{conv.alpha_out:g}" if conv else "-",
            fmt.si(p._get(p.before, "macs")), fmt.si(p._get(p.after, "macs")), fmt.ratio(p.ratio("macs")),
        )
    hidden = len(c.layers) - len(shown)
    note = Text(f"{hidden} layers without MACs (norms, activations, pooling) are not listed; --json has every layer.", style="dim")
    return Group(table, note) if hidden else Group(table)


# --------------------------------------------------------------------------------- profile
def profile_summary(p: Any) -> Group:
    title = Text()
    title.append(p.model, style="bold")
    title.append(f", input {fmt.inputs_text(p.inputs, p.batch)}")
    totals = _table()
    totals.add_column("")
    _num_column(totals, "total")
    _num_column(totals, "exact")
    totals.add_row("MACs", fmt.si(p.macs), f"{p.macs:,}")
    totals.add_row("FLOPs", fmt.si(p.flops), f"{p.flops:,}")
    totals.add_row("Params", fmt.si(p.params), f"{p.params:,}")
    totals.add_row("Feature maps", fmt.nbytes(p.feature_map_bytes), f"{p.feature_map_bytes:,} B")
    parts: List[Any] = [title, totals]
    if p.latency is not None:
        parts.append(Text(f"Latency: {p.latency.describe()}"))
    groups = stages([(r.name, r.macs) for r in p.layers])
    by_name = {r.name: r for r in p.layers}
    labels, prefix = _stage_labels([g.label for g in groups])
    table = _table(_title_with_prefix("By stage", prefix), show_footer=True)
    _name_column(table, labels, "Stage", footer="total")
    _num_column(table, "convs", footer=str(sum(is_conv(r.type) for r in p.layers)))
    _num_column(table, "octave", footer=str(sum(is_octave(r.type) for r in p.layers)))
    _num_column(table, "MACs", footer=fmt.si(p.macs))
    _num_column(table, "share", footer="100%" if p.macs else "-")
    _num_column(table, "params", footer=fmt.si(p.params))
    _num_column(table, "feature\nmaps", footer=fmt.nbytes(p.feature_map_bytes))
    for g, label in zip(groups, labels):
        rows = [by_name[n] for n in g.names]
        macs = sum(r.macs for r in rows)
        table.add_row(
            escape(label), str(sum(is_conv(r.type) for r in rows)), str(sum(is_octave(r.type) for r in rows)),
            fmt.si(macs), f"{macs / p.macs:.0%}" if p.macs else "-", fmt.si(sum(r.params for r in rows)),
            fmt.nbytes(sum(r.feature_map_bytes for r in rows)),
        )
    parts += [table, Text(fmt.POINTER, style="dim")]
    return Group(*parts)


def profile_layers(p: Any) -> Group:
    shown = [r for r in p.layers if r.macs or r.params]
    prefix = common_prefix([r.name for r in shown])
    table = _table(_title_with_prefix("Layers with MACs or parameters", prefix))
    _name_column(table, [_strip(r.name, prefix) for r in shown])
    table.add_column("type", no_wrap=True)
    _num_column(table, "params")
    _num_column(table, "MACs")
    _num_column(table, "maps")
    table.add_column("output", overflow="fold")
    for r in shown:
        table.add_row(
            escape(_strip(r.name, prefix)), r.type, fmt.si(r.params), fmt.si(r.macs), fmt.nbytes(r.feature_map_bytes),
            fmt.shapes(r.output_shapes, r.calls),
        )
    hidden = len(p.layers) - len(shown)
    note = Text(f"{hidden} layers without MACs or parameters are not listed; --json has every layer.", style="dim")
    return Group(table, note) if hidden else Group(table)


# --------------------------------------------------------------------------------- the record
def _names(names: Sequence[str], full: bool) -> str:
    if full or len(names) <= _SHOWN_NAMES:
        return ", ".join(names)
    return ", ".join(names[: _SHOWN_NAMES - 1]) + f", +{len(names) - _SHOWN_NAMES + 1} more (--layers lists all)"


def record_summary(record: Any, full: bool = False) -> Group:
    """What stayed plain, grouped by reason, and the merges, splits and aligns inserted, grouped
    by op and reason. ``full``: every name (else the first few per reason)."""
    parts: List[Any] = []
    plain = record.plain
    if plain:
        parts.append(Text(f"Left plain: {len(plain)} of {len(record.convs)} convs", style="bold"))
        reasons: "OrderedDict[str, List[str]]" = OrderedDict()
        for conv in plain:
            reasons.setdefault(str(conv.plain_reason), []).append(conv.name)
        for reason, names in reasons.items():
            what = names[0] if len(names) == 1 else f"{len(names)} convs"
            parts.append(_hanging(f"{what}: {reason}" + (f": {_names(names, full)}" if len(names) > 1 else "")))
    if record.merges:
        kinds = ", ".join(f"{record.count(k)} {k}{'s' * (record.count(k) != 1)}" for k in ("merge", "split", "align", "layout") if record.count(k))
        parts.append(Text(f"Inserted: {kinds}", style="bold"))
        where: "OrderedDict[Tuple[str, str, str], List[str]]" = OrderedDict()
        for m in record.merges:
            where.setdefault((m.kind, m.target, m.reason), []).append(m.node)
        for (kind, target, reason), nodes in where.items():
            parts.append(_hanging(f"{kind} before {target} ({len(nodes)}): {reason}; at {_names(nodes, full)}"))
    elif record.converted:
        parts.append(Text("Inserted: no merge, split or align (the octave pairs run through to the output)."))
    return Group(*parts)


def _hanging(text: str) -> Padding:
    """An indented entry whose wrapped lines keep the indent."""
    return Padding(Text(text), (0, 0, 0, 2), expand=False)
