"""mkdocs hook: ``<!-- results: NAME -->`` in a page becomes the table that a benchmark saved in
``benchmarks/results/NAME.json`` (``benchmarks/result_table.py``), followed by its machine, command
and date. A marker without its file fails the build, so a page cannot show a figure no script
wrote."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))
from result_table import markdown_header, markdown_row  # noqa: E402  (the scripts print their tables with these)
MARKER = re.compile(r"^<!-- results: ([\w.-]+) -->$", re.M)  # a line of its own (not one quoted in prose)


def render(name: str) -> str:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"docs: <!-- results: {name} --> names {path}, which no benchmark has written")
    data = json.loads(path.read_text())
    lines = markdown_header(data["columns"], data["align"]) + [markdown_row(row) for row in data["rows"]]
    lines.append("")
    lines += [note for note in data.get("notes", []) if note.strip()]
    lines.append("")
    lines.append(f"*Measured {data['date']} on {data['machine']}, with `{data['command']}` "
                 f"(`benchmarks/results/{name}.json`).*")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    return MARKER.sub(lambda m: render(m.group(1)), markdown)
