"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, nothing
fetched, so it opens from a file on a machine with no network.

>>> import torch, octify
>>> conv = lambda c_in: torch.nn.Conv2d(c_in, 8, 3, padding=1)
>>> net = torch.nn.Sequential(conv(3), torch.nn.ReLU(), conv(8), torch.nn.ReLU(), conv(8))
>>> x = torch.randn(1, 3, 32, 32)
>>> oct_net = octify.convert(net, 0.5, example_inputs=x)
>>> page = octify.compare(net, oct_net, x).to_html(octify.record_of(oct_net))
>>> page.startswith("<!DOCTYPE html>"), page.count("<svg"), "alpha 0 -&gt; 0.5" in page
(True, 3, True)
"""

from __future__ import annotations

from collections import OrderedDict
from html import escape
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _format as fmt
from ._stages import stages
from ._tables import comparison_stage_rows, is_conv

__all__ = ["comparison_html", "profile_html"]

# A Comparison or Profile comes in as an argument; this module never imports them (they import it).

BEFORE, AFTER = "#9aa5b1", "#1f77b4"
_LABEL_W, _BAR_W, _ROW_H = 230, 520, 14

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24; margin: 24px auto; max-width: 960px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; } table { border-collapse: collapse; margin: 8px 0; }
td, th { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eaeef2; } td:first-child, th:first-child { text-align: left; }
th { background: #f6f8fa; } .big { font-size: 20px; font-weight: 600; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; } .card { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 16px; min-width: 150px; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: -1px; }
svg text { font: 12px system-ui, sans-serif; fill: #1b1f24; } .note { color: #57606a; font-size: 12px; }
"""


def _page(title: str, body: List[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _legend(series: Sequence[Tuple[str, str]]) -> str:
    return "<div class=\"legend\">" + "".join(f"<span style=\"background:{c}\"></span>{escape(n)}" for n, c in series) + "</div>"


def _bars(
    rows: Sequence[Tuple[str, Sequence[Optional[float]], str]],
    colors: Sequence[str],
    text: Callable[[Optional[float]], str],
) -> str:
    """Horizontal grouped bars: each row is (label, one value per series, a note after the values)."""
    top = max([v or 0 for _, values, _ in rows for v in values] + [1])
    per_row = _ROW_H * len(colors) + 8
    height = per_row * len(rows) + 4
    width = _LABEL_W + _BAR_W + 230
    out = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\">"]
    for i, (label, values, note) in enumerate(rows):
        y = i * per_row + 4
        shown = label if len(label) <= 34 else "…" + label[-33:]
        out.append(f"<text x=\"{_LABEL_W - 8}\" y=\"{y + per_row / 2}\" text-anchor=\"end\"><title>{escape(label)}</title>{escape(shown)}</text>")
        for k, (v, color) in enumerate(zip(values, colors)):
            w = 0 if not v else max(1.0, _BAR_W * v / top)
            yy = y + k * _ROW_H
            out.append(f"<rect x=\"{_LABEL_W}\" y=\"{yy}\" width=\"{w:.1f}\" height=\"{_ROW_H - 2}\" fill=\"{color}\"/>")
            out.append(f"<text x=\"{_LABEL_W + w + 5:.1f}\" y=\"{yy + _ROW_H - 4}\">{escape(text(v))}"
                       + (f"  {escape(note)}" if note and k == len(values) - 1 else "") + "</text>")
    out.append("</svg>")
    return "".join(out)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    h = "".join(f"<th>{escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _conventions() -> str:
    items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in fmt.CONVENTIONS.items())
    return f"<h2>How octify counts</h2><ul class=\"note\">{items}</ul>"


def _record_sections(record: Any) -> List[str]:
    out: List[str] = []
    plain = record.plain
    out.append(f"<h2>Left plain: {len(plain)} of {len(record.convs)} convs</h2>")
    if plain:
        reasons: "OrderedDict[str, List[str]]" = OrderedDict()
        for c in plain:
            reasons.setdefault(str(c.plain_reason), []).append(c.name)
        out.append(_table(["reason", "convs", "names"], [(r, len(n), ", ".join(n)) for r, n in reasons.items()]))
    out.append(f"<h2>Merges, splits and aligns: {len(record.merges)}</h2>")
    if record.merges:
        out.append("<p class=\"note\">Where an octave pair becomes a plain tensor again (merge), a plain tensor becomes "
                   "a pair (split), or two channel layouts are matched (align), before this node of the traced model.</p>")
        out.append(_table(["kind", "before node", "op", "reason"], [(m.kind, m.node, m.target, m.reason) for m in record.merges]))
    else:
        out.append("<p>None: the octave pairs run through to the output.</p>")
    return out


def _fidelity_section(r: Dict[str, Any]) -> List[str]:
    rows = [("relative error of the outputs", f"{r['rel_error']:.4f}")]
    if r.get("agreement") is not None:
        rows.append(("top-1 agreement with the original", f"{r['agreement']:.2%}"))
    if "accuracy" in r:
        rows += [("accuracy", f"{r['accuracy']:.2%}"), ("accuracy of the original", f"{r['original_accuracy']:.2%}")]
    return [f"<h2>Fidelity to the original on {r['samples']} samples</h2>", _table(["measure", "value"], rows)]


def _calibration_section(cal: Dict[str, Any]) -> List[str]:
    out = ["<h2>Calibration</h2>", f"<p>{escape(fmt.calibration_text(cal, cal.get('samples')))}.</p>"]
    if cal["rel_error"]:
        out.append(_table(["conversion", "rel. error on the calibration data", ""],
                          [(fmt.CALIBRATION_CANDIDATES[k], f"{e:.4f}", "chosen" if k == cal["chosen"] else "")
                           for k, e in cal["rel_error"].items()]))
    return out


def _curve_svg(curve: Sequence[Dict[str, Any]], plain_ms: float, chosen_ms: float) -> str:
    """The trade-off curve: time (x, a fraction of the plain blocks' time) against fidelity cost (y)."""
    w, h, pad = 420, 220, 40
    xs = [p["ms"] / plain_ms for p in curve] + [1.0]
    ys = [p["cost"] for p in curve] + [0.0]
    x0, x1 = min(xs + [1.0]) * 0.95, max(xs) * 1.02
    y1 = max(ys) * 1.1 or 1.0
    px = lambda v: pad + (v - x0) / (x1 - x0) * (w - 2 * pad)  # noqa: E731
    py = lambda v: h - pad - v / y1 * (h - 2 * pad)  # noqa: E731
    out = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">",
           f"<line x1=\"{pad}\" y1=\"{h - pad}\" x2=\"{w - pad}\" y2=\"{h - pad}\" stroke=\"#888\"/>",
           f"<line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{h - pad}\" stroke=\"#888\"/>",
           f"<text x=\"{w / 2}\" y=\"{h - 8}\" text-anchor=\"middle\">time of the blocks (x plain)</text>",
           f"<text x=\"12\" y=\"{pad - 12}\">fidelity cost</text>",
           "<polyline fill=\"none\" stroke=\"#999\" points=\"" + " ".join(f"{px(p['ms'] / plain_ms):.1f},{py(p['cost']):.1f}" for p in curve) + "\"/>"]
    for p in curve:
        chosen = abs(p["ms"] - chosen_ms) < 1e-9
        out.append(f"<circle cx=\"{px(p['ms'] / plain_ms):.1f}\" cy=\"{py(p['cost']):.1f}\" r=\"{6 if chosen else 3}\" fill=\"{AFTER if chosen else BEFORE}\">"
                   f"<title>{p['ms'] / plain_ms:.2f}x, cost {p['cost']:.4f}, {p['octave_units']} octave blocks</title></circle>")
    for v in (x0, 1.0, x1):
        out.append(f"<text x=\"{px(v):.1f}\" y=\"{h - pad + 14}\" text-anchor=\"middle\">{v:.2f}</text>")
    out.append("</svg>")
    return "".join(out)


def _latency_plan_section(plan: Dict[str, Any]) -> List[str]:
    out = ["<h2>Latency plan, measured on this machine</h2>"] + [f"<p>{escape(line.strip())}</p>" for line in fmt.latency_plan_text(plan).splitlines()]
    if "units" not in plan or not plan["plain_ms"]:
        return out
    alphas = sorted({a for u in plan["units"] for a in u["ms"]}, key=float)
    rows = [(u["unit"], *(f"{u['ms'][a]:.2f}" for a in alphas), "plain" if not u["alpha"] else f"{u['alpha']:g}") for u in plan["units"]]
    out.append(_table(["block", *(("plain ms" if float(a) == 0 else f"alpha {a} ms") for a in alphas), "chosen"], rows))
    out.append(_curve_svg(plan["curve"], plan["plain_ms"], plan["predicted_ms"]))
    return out


def comparison_html(c: Any, record: Any = None, fidelity: Optional[Dict[str, Any]] = None) -> str:
    """The page of a comparison; with ``record`` (``octify.record_of(converted)``) also what stayed
    plain, where the merges are and what calibration chose; with ``fidelity`` (``octify.fidelity``'s
    result) how close the converted model is to the original."""
    b, a = c.before, c.after
    body = [
        f"<h1>{escape(b.model)} &rarr; {escape(a.model)}</h1>",
        f"<div class=\"sub\">octify report, input {escape(fmt.inputs_text(b.inputs, b.batch))}</div>",
        "<div class=\"cards\">",
    ]
    for label, key, show in (("MACs", "macs", fmt.si), ("Feature maps", "feature_map_bytes", fmt.nbytes), ("Params", "params", fmt.si)):
        body.append(f"<div class=\"card\">{label}<div class=\"big\">{fmt.ratio(c.ratio(key))}&times;</div>"
                    f"<div class=\"sub\">{escape(show(getattr(b, key)))} &rarr; {escape(show(getattr(a, key)))}</div></div>")
    if b.latency is not None and a.latency is not None:
        body.append(f"<div class=\"card\">Latency (median)<div class=\"big\">{fmt.ratio(c.ratio('latency'))}&times;</div>"
                    f"<div class=\"sub\">{b.latency.median_ms:.2f} &rarr; {a.latency.median_ms:.2f} ms</div></div>")
    if fidelity is not None and fidelity.get("agreement") is not None:
        body.append(f"<div class=\"card\">Top-1 agreement<div class=\"big\">{fidelity['agreement']:.1%}</div>"
                    f"<div class=\"sub\">rel. error {fidelity['rel_error']:.4f}</div></div>")
    elif fidelity is not None:
        body.append(f"<div class=\"card\">Rel. error<div class=\"big\">{fidelity['rel_error']:.4f}</div>"
                    f"<div class=\"sub\">on {fidelity['samples']} samples</div></div>")
    body.append("</div>")
    if fidelity is not None:
        body += _fidelity_section(fidelity)
    if record is not None and getattr(record, "calibration", None):
        body += _calibration_section(record.calibration)
    if record is not None and getattr(record, "latency_plan", None):
        body += _latency_plan_section(record.latency_plan)
    legend = _legend([("before (original)", BEFORE), ("after (octave)", AFTER)])
    stage_rows = comparison_stage_rows(c)
    for title, before, after, show in (("MACs by stage", "macs_before", "macs_after", fmt.si),
                                       ("Feature-map memory by stage", "maps_before", "maps_after", fmt.nbytes)):
        rows = []
        for r in stage_rows:
            vb, va = getattr(r, before), getattr(r, after)
            note = f"{fmt.ratio(fmt.div(va, vb))}x" + (f", {r.octave}/{r.convs} convs octave" if r.convs else "")
            rows.append((r.label, (vb, va), note))
        body += [f"<h2>{title}</h2>", legend, _bars(rows, (BEFORE, AFTER), show)]
    conv_rows = []
    alphas = {r.name: r for r in c.convs}
    for p in c.layers:
        if p.before is None or not is_conv(p.before.type):
            continue
        conv = alphas.get(p.name)
        note = f"alpha {conv.alpha_in:g} -> {conv.alpha_out:g}" if conv else "plain"
        conv_rows.append((p.name, (p.before.macs, p._get(p.after, "macs")), note))
    body += ["<h2>MACs per conv, with each conv's alpha (in -> out)</h2>", legend, _bars(conv_rows, (BEFORE, AFTER), fmt.si)]
    if record is not None:
        body += _record_sections(record)
    body.append(_conventions())
    return _page(f"octify: {b.model} -> {a.model}", body)


def profile_html(p: Any) -> str:
    """The page of one profile: MACs and feature-map memory by stage and per conv."""
    body = [
        f"<h1>{escape(p.model)}</h1>",
        f"<div class=\"sub\">octify report, input {escape(fmt.inputs_text(p.inputs, p.batch))}</div>",
        "<div class=\"cards\">",
        f"<div class=\"card\">MACs<div class=\"big\">{escape(fmt.si(p.macs))}</div></div>",
        f"<div class=\"card\">Feature maps<div class=\"big\">{escape(fmt.nbytes(p.feature_map_bytes))}</div></div>",
        f"<div class=\"card\">Params<div class=\"big\">{escape(fmt.si(p.params))}</div></div>",
        "</div>",
    ]
    by_name = {r.name: r for r in p.layers}
    groups = stages([(r.name, r.macs) for r in p.layers])
    for title, key, show in (("MACs by stage", "macs", fmt.si), ("Feature-map memory by stage", "feature_map_bytes", fmt.nbytes)):
        rows = [(g.label, (sum(getattr(by_name[n], key) for n in g.names),), "") for g in groups]
        body += [f"<h2>{title}</h2>", _bars(rows, (AFTER,), show)]
    conv_rows = [(r.name or "(model)", (r.macs,), r.type) for r in p.layers if is_conv(r.type)]
    body += ["<h2>MACs per conv</h2>", _bars(conv_rows, (AFTER,), fmt.si), _conventions()]
    return _page(f"octify: {p.model}", body)
