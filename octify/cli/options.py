"""Typed command-line options: each option's text becomes its value in one parser, and the
value is checked by the library's own validator, so ``--alpha 1.5`` and ``alpha=1.5`` get the
same words. The parsers raise ``typer.BadParameter``; :mod:`.app` prints it on one line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import typer

from ..utils.choices import IMAGENET_MEAN, IMAGENET_STD, NORMALIZE_HELP
from ..utils.validate import check_alpha, check_choice, check_int, check_number

__all__ = ["Shape", "GlobAlpha", "ModelArg", "Normalize", "model_arg", "model_kwargs", "normalize", "alpha", "number", "fraction", "integer", "shape", "glob_alpha", "choice", "check_writable"]


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


@dataclass(frozen=True)
class ModelArg:
    """One ``KEY=VALUE`` of ``--model-arg``: a keyword argument of the model's constructor."""

    key: str
    value: Any


@dataclass(frozen=True)
class Normalize:
    """``--normalize``: the mean and std images are normalised by (None: not normalised)."""

    mean: Optional[Tuple[float, ...]]
    std: Optional[Tuple[float, ...]]


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


def model_arg(text: Any) -> ModelArg:
    """``KEY=VALUE``, the value read as a Python literal (``10``, ``0.5``, ``True``, ``None``,
    ``'VGG16'``, ``[2, 4, 2]``) and kept as text when it is not one (``vgg_name=VGG16``), as timm's
    ``--model-kwargs`` reads them."""
    import ast

    if isinstance(text, ModelArg):
        return text
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise typer.BadParameter(
            f"malformed --model-arg '{text}': expected KEY=VALUE with KEY a Python name, e.g. num_classes=10 or vgg_name=VGG16"
        )
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return ModelArg(key, parsed)


def model_kwargs(args: Sequence[ModelArg] | None) -> dict:
    """The keyword arguments of repeated ``--model-arg``; a key given twice is refused."""
    from .console import usage

    out: dict = {}
    for a in args or ():
        if a.key in out:
            raise usage(f"--model-arg {a.key} is given twice ({out[a.key]!r} and {a.value!r}): expected each argument once")
        out[a.key] = a.value
    return out


def normalize(text: Any) -> Normalize:
    """``imagenet``, ``none`` or ``MEAN/STD`` (one value or three each)."""
    if isinstance(text, Normalize):
        return text
    t = str(text).strip().lower()
    if t == "imagenet":
        return Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if t == "none":
        return Normalize(None, None)
    mean, sep, std = t.partition("/")
    try:
        m = tuple(float(v) for v in mean.split(",") if v.strip())
        s = tuple(float(v) for v in std.split(",") if v.strip())
    except ValueError:
        m = s = ()
    if not sep or len(m) not in (1, 3) or len(s) not in (1, 3) or any(v <= 0 for v in s):
        raise typer.BadParameter(f"malformed --normalize '{text}': expected {NORMALIZE_HELP}")
    return Normalize(m * 3 if len(m) == 1 else m, s * 3 if len(s) == 1 else s)


def check_writable(path: Path, what: str) -> None:
    """Fail fast, before the long steps, when ``path`` cannot be written."""
    import os

    from .console import CLIError

    if path.is_dir():
        raise CLIError(f"cannot write {what} to {path}: it is a directory. Hint: give a file name, e.g. -o {path / 'model_oct.safetensors'}.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise CLIError(f"cannot write {what} to {path}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise CLIError(f"cannot write {what} to {path}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CLIError(f"cannot write {what} to {path}: permission denied. Hint: choose another path.")
