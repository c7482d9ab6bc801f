"""Where benchmark tables go besides the screen: ``benchmarks/results/NAME.json``, one file per
table, with the machine, the command and the date. The docs render them (``docs/hooks/results.py``
replaces ``<!-- results: NAME -->`` in a page with the table), so each figure is written down by
the script that measured it, and stated once.

    table = ResultTable("layer", ["shape", "layout", "ratio"], "--:")
    table.row("64ch@56x56", "channels_last", "0.65")   # printed as a markdown row, and kept
    table.note("target: ratio <= 0.70 in every row: met")
    table.save()                                       # benchmarks/results/layer.json
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line: CPU model, cores, instruction set of note, torch version and threads."""
    import torch

    cpu = platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        if " avx512f" in info:
            cpu += " (AVX-512)"
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _script() -> str:
    """The running script as typed from the repository's root, wherever it was started from."""
    path = Path(sys.argv[0]).resolve()
    return path.relative_to(RESULTS.parents[1]).as_posix() if path.is_relative_to(RESULTS.parents[1]) else os.path.relpath(sys.argv[0])


def markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_header(columns: Sequence[str], align: str) -> List[str]:
    """The header and separator lines of a markdown table (``align``: '-' left, ':' right per column);
    the docs hook renders saved tables with the same two functions."""
    return [markdown_row(columns), "|" + "|".join("---:" if a == ":" else "---" for a in align) + "|"]


class ResultTable:
    """A markdown table printed row by row as it is measured, then saved as JSON."""

    def __init__(self, name: str, columns: Sequence[str], align: Optional[str] = None) -> None:
        self.name, self.columns = name, list(columns)
        self.align = align or "-" * len(self.columns)  # one character per column: '-' left, ':' right
        if len(self.align) != len(self.columns) or set(self.align) - {"-", ":"}:
            raise ValueError(f"{name}: align {self.align!r} must be one '-' or ':' per column, for {len(self.columns)} columns")
        self.rows: List[List[str]] = []
        self.notes: List[str] = []
        print("\n".join(markdown_header(self.columns, self.align)), flush=True)

    def row(self, *cells: object) -> None:
        cells_text = [str(c) for c in cells]
        if len(cells_text) != len(self.columns):
            raise ValueError(f"{self.name}: a row of {len(cells_text)} cells for {len(self.columns)} columns")
        self.rows.append(cells_text)
        print(markdown_row(cells_text), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text, flush=True)

    def save(self, unless: str = "") -> Optional[Path]:
        """Write the JSON file; with ``unless`` (why this run is not the one the docs show: a part
        of the default rows, other settings), say so and write nothing."""
        if unless:
            print(f"(not saved: {unless})")
            return None
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        data = {
            "name": self.name, "columns": self.columns, "align": self.align, "rows": self.rows, "notes": self.notes,
            "command": "python " + " ".join(shlex.quote(a) for a in [_script(), *sys.argv[1:]]),
            "date": datetime.date.today().isoformat(), "machine": machine(),
        }
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"(saved {path})")
        return path
