"""Typed command-line options: each option's text becomes its value in one parser, and the
value is checked by the library's own validator, so ``--alpha 1.5`` and ``alpha=1.5`` get the
same words. The parsers raise ``typer.BadParameter``; :mod:`.app` prints it on one line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, Tuple

import typer

from ..utils.validate import check_alpha, check_choice, check_int, check_number

__all__ = ["Shape", "GlobAlpha", "alpha", "number", "fraction", "integer", "shape", "glob_alpha", "choice", "check_writable"]


@dataclass(frozen=True)
class Shape:
    """An input shape N,C,H,W."""

    dims: Tuple[int, ...]

    def __str__(self) -> str:
        return "x".join(map(str, self.dims))


@dataclass(frozen=True)
class GlobAlpha:
    """One ``GLOB=ALPHA`` of ``--alpha-for``."""

    glob: str
    alpha: float


def _checked(fn: Callable[[Any], Any], value: Any) -> Any:
    try:
        return fn(value)
    except (TypeError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None


def _number(convert: Callable[[str], Any], what: str, check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Text -> number (``'half' is not a number``), then the library's check of its range."""

    def parse(text: Any) -> Any:
        if isinstance(text, str):
            try:
                text = convert(text)
            except ValueError:
                raise typer.BadParameter(f"'{text}' is not {what}") from None
        return _checked(check, text)

    return parse


def alpha(name: str) -> Callable[[Any], float]:
    return _number(float, "a number: expected a fraction in [0, 1], e.g. 0.5 or 0.125", lambda v: check_alpha(v, name))


def number(name: str, minimum: float, *, above: bool = False, example: str = "") -> Callable[[Any], float]:
    return _number(float, f"a number: expected one {'>' if above else '>='} {minimum:g}, {example}", lambda v: check_number(v, name, minimum, above=above))


def fraction(name: str) -> Callable[[Any], float]:
    """A share strictly between 0 and 1."""

    def check(v: Any) -> float:
        if check_number(v, name, 0.0, above=True) >= 1.0:
            raise ValueError(f"{name} must be a fraction in (0, 1), found {float(v):g}")
        return float(v)

    return _number(float, "a number: expected a fraction in (0, 1), e.g. 0.1", check)


def integer(name: str, minimum: int, example: str) -> Callable[[Any], int]:
    return _number(int, f"an integer: expected {example}", lambda v: check_int(v, name, minimum))


def choice(name: str, choices: Sequence[str]) -> Callable[[Any], str]:
    return lambda text: _checked(lambda v: check_choice(v, name, choices), text)


def shape(text: Any) -> Shape:
    """``1,3,224,224`` (also ``1x3x224x224``, ``(1, 3, 224, 224)``); 3 dims for 1-D models
    (N,C,L), 5 for video (N,C,T,H,W)."""
    if isinstance(text, Shape):
        return text
    body = str(text).strip().strip("()[]")
    parts = [p for p in re.split(r"[,xX\s]+", body) if p]
    hint = "expected 4 comma-separated positive integers N,C,H,W, e.g. 1,3,224,224 (or 3, N,C,L, for audio; 5, N,C,T,H,W, for video)"
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"malformed --input-shape '{text}': {hint}") from None
    if len(dims) not in (3, 4, 5):
        raise typer.BadParameter(f"malformed --input-shape '{text}': {hint}; found {len(dims)} value{'s' * (len(dims) != 1)}")
    if any(d <= 0 for d in dims):
        raise typer.BadParameter(f"malformed --input-shape '{text}': {hint}; found a size that is not positive")
    return Shape(dims)


def glob_alpha(text: Any) -> GlobAlpha:
    if isinstance(text, GlobAlpha):
        return text
    glob, sep, value = str(text).rpartition("=")
    if not sep or not glob.strip():
        raise typer.BadParameter(f"malformed --alpha-for '{text}': expected GLOB=ALPHA, e.g. 'layer4.*=0' or 'features.1*=0.25'")
    return GlobAlpha(glob.strip(), alpha(f"alpha_for[{glob.strip()!r}]")(value.strip()))


def check_writable(path: Path, what: str) -> None:
    """Fail fast, before the long steps, when ``path`` cannot be written."""
    import os

    from .console import CLIError

    if path.is_dir():
        raise CLIError(f"cannot write {what} to {path}: it is a directory. Hint: give a file name, e.g. -o {path / 'model_oct.pt'}.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise CLIError(f"cannot write {what} to {path}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise CLIError(f"cannot write {what} to {path}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CLIError(f"cannot write {what} to {path}: permission denied. Hint: choose another path.")
