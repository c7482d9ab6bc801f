"""The command line's output and its one error boundary.

Every domain error is caught once, at the command boundary (:meth:`UI.boundary`), and becomes
one line on stderr and an exit code: 2 when the command line asks for something that cannot be
used (a missing file, a malformed option, a model that does not build without arguments, an
input shape the model cannot take), 1 when a step fails (the model file raises, torch.fx cannot
trace it, the output cannot be written). ``--debug`` adds the Python traceback. Errors in the
options themselves (reported by the option parser before a command runs) get the same one line
from :func:`usage_line`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..errors import ConversionError, ExportError, MissingDependency, OptionError

__all__ = ["CLIError", "LoadError", "SpecError", "usage", "UI", "one_line", "describe_exception", "write_json", "print_error"]


class CLIError(Exception):
    """A message for the user and the exit code to leave with (2: usage, 1: failure)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LoadError(Exception):
    """A model or checkpoint could not be loaded (exit code 1)."""

    exit_code = 1


class SpecError(LoadError):
    """The command line names something that cannot be used as asked (exit code 2)."""

    exit_code = 2


def usage(message: str) -> CLIError:
    return CLIError(message, 2)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_exception(e: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters of message."""
    text = " ".join(str(e).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def print_error(message: str) -> None:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]octify: error:[/] {escape(one_line(message))}")


# The width rich lays out for when output goes to a pipe or file: wide enough never to wrap a message.
PIPE_WIDTH = 4000


class UI:
    """The two consoles (report: stdout, or stderr when JSON goes to stdout; errors: stderr),
    the transient progress display, and the error boundary."""

    def __init__(self, *, json_to_stdout: bool = False, quiet: bool = False, debug: bool = False) -> None:
        self.out = Console(stderr=json_to_stdout, quiet=quiet, highlight=False)
        # Output is wrapped to a terminal's width, but not when it goes to a pipe or a file, where
        # rich would assume 80 columns and break lines that grep and logs should see whole; there
        # tables take their natural width, and prose runs on (soft wrap). COLUMNS set asks for
        # that width anywhere.
        self._soft = not self.out.is_terminal and not os.environ.get("COLUMNS")
        if self._soft:
            self.out.width = PIPE_WIDTH
        self.debug = debug
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            _BarWhenCounted(bar_width=24),
            _WhenCounted(MofNCompleteColumn()),
            TimeElapsedColumn(),
            console=self.out,
            transient=True,
            disable=quiet or not self.out.is_terminal,
        )

    @contextlib.contextmanager
    def step(self, description: str) -> Iterator[Callable[[str, int, int], None]]:
        """A long step: a spinner while it runs (on a terminal), its warnings printed after it as notes.

        It gives a callback ``(text, done, total)`` for steps that count their progress (the
        measured plan of ``--policy latency``): the line then shows a bar, and the text after
        the description."""
        task = self.progress.add_task(escape(description), total=None)

        def advance(text: str, done: int, total: int) -> None:
            self.progress.update(task, description=escape(f"{description}: {text}"), completed=done, total=total)

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield advance
        finally:
            self.progress.remove_task(task)
        seen = set()
        for w in caught:
            text = one_line(str(w.message))
            if text not in seen:
                seen.add(text)
                self.warn(text)

    def say(self, text: str) -> None:
        self.out.print(text, soft_wrap=self._soft)

    def warn(self, text: str) -> None:
        self.out.print(f"[yellow]warning:[/] {escape(one_line(text))}", soft_wrap=self._soft)

    def note(self, text: str) -> None:
        self.out.print(f"[yellow]note:[/] {escape(text)}", soft_wrap=self._soft)

    @contextlib.contextmanager
    def boundary(self) -> Iterator[None]:
        """Run a command: domain errors become one line on stderr and an exit code."""
        import typer

        try:
            with self.progress, _without_fx_call_dumps(enabled=not self.debug):
                yield
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            Console(stderr=True).print("[red]octify: interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as e:  # the one place errors are turned into messages
            code, message = _describe(e)
            if self.debug:
                sys.stderr.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
            print_error(message)
            raise typer.Exit(code) from None


class _WhenCounted(ProgressColumn):
    """A column shown only for steps that count their progress (a spinner alone for the others)."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self.column = column

    def render(self, task: Task) -> Any:
        return self.column.render(task) if task.total is not None else Text("")


class _BarWhenCounted(BarColumn):
    def render(self, task: Task) -> Any:
        return super().render(task) if task.total is not None else Text("")


class _FxDumpFilter:
    """sys.stderr without the traceback torch.fx prints by itself when a GraphModule's generated
    forward raises ("Call using an FX-traced Module ..."): the error reaches the boundary anyway
    and is printed there in one line (--debug keeps the dump)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.dropped = stream, False

    def write(self, text: str) -> int:
        if "Call using an FX-traced Module" in text:
            self.dropped = True  # print() writes the newline next
            return len(text)
        if self.dropped and text == "\n":
            self.dropped = False
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def _without_fx_call_dumps(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    real = sys.stderr
    sys.stderr = _FxDumpFilter(real)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = real


def _describe(e: BaseException) -> tuple[int, str]:
    if isinstance(e, (CLIError, LoadError)):
        return e.exit_code, one_line(str(e))
    if isinstance(e, OptionError):  # a value given to the library that it cannot use: the command line's
        return 2, one_line(str(e))
    if isinstance(e, ConversionError):  # the library's hint names its arguments; the command line's, its flags
        hint = e.cli_hint or e.hint or "keep the part torch.fx cannot trace whole with --leaf GLOB; its convs then stay plain."
        return 1, one_line(f"{e.message} Hint: {hint}")
    if isinstance(e, (MissingDependency, ExportError)):
        return 1, one_line(str(e))
    if isinstance(e, OSError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return 1, f"{where}{e.strerror or e}"
    return 1, f"unexpected {type(e).__name__}: {one_line(str(e))} (rerun with --debug for the traceback)"


def write_json(ui: UI, data: Any, target: str) -> None:
    text = json.dumps(data, indent=2, default=_json_default)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    path = Path(target)
    try:
        path.write_text(text + "\n")
    except OSError as e:
        raise CLIError(f"cannot write the JSON report to {path}: {e.strerror or e}.") from e
    ui.say(f"Wrote the JSON report to [cyan]{escape(str(path))}[/]")


def _json_default(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Size):
        return list(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (torch.dtype, torch.device, Path)):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
