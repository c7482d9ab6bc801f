"""Validation of user-given values: one function per kind of value, one message per mistake.

The library, the layers and the command line all call these, so the same bad value gets the
same exception type and the same words everywhere: ``TypeError`` for a value of the wrong
kind, ``ValueError`` for one of the right kind out of range. ``what`` names the value as the
caller's user knows it (``"alpha"``, ``"OctConv2d: octave"``, ``"--octave"``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Sequence

from ..errors import OptionError, OptionTypeError

__all__ = ["check_alpha", "check_number", "check_int", "check_bool", "check_octave", "check_choice", "check_globs", "check_module"]


def check_alpha(value: Any, what: str = "alpha") -> float:
    """A fraction of low-frequency channels, in [0, 1], as a float.

    >>> check_alpha(0.25)
    0.25
    >>> check_alpha(1.5)
    Traceback (most recent call last):
    ...
    octify.errors.OptionError: alpha must be a number in [0, 1], found 1.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise OptionTypeError(f"{what} must be a number in [0, 1], found {value!r} ({type(value).__name__})")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise OptionError(f"{what} must be a number in [0, 1], found {number:g}")
    return number


def check_number(value: Any, what: str, minimum: float, *, above: bool = False) -> float:
    """A real number of at least ``minimum`` (strictly above it with ``above=True``), as a float.

    >>> check_number(0.0, "lr", 0.0, above=True)
    Traceback (most recent call last):
    ...
    octify.errors.OptionError: lr must be a number > 0, found 0
    """
    bound = f"{'>' if above else '>='} {minimum:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise OptionTypeError(f"{what} must be a number {bound}, found {value!r} ({type(value).__name__})")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < minimum or (above and number == minimum):
        raise OptionError(f"{what} must be a number {bound}, found {number:g}")
    return number


def check_int(value: Any, what: str, minimum: int) -> int:
    """An integer (not a bool, not a float that happens to be whole) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionTypeError(f"{what} must be an integer >= {minimum}, found {value!r} ({type(value).__name__})")
    if value < minimum:
        raise OptionError(f"{what} must be an integer >= {minimum}, found {value}")
    return value


def check_bool(value: Any, what: str) -> bool:
    """True or False, not a truthy stand-in ("no" is truthy)."""
    if not isinstance(value, bool):
        raise OptionTypeError(f"{what} must be True or False, found {value!r} ({type(value).__name__})")
    return value


def check_octave(value: Any, what: str = "octave") -> int:
    """The resolution ratio between the two branches: an integer >= 1 (1: same resolution).

    >>> check_octave(2.0)
    Traceback (most recent call last):
    ...
    octify.errors.OptionTypeError: octave must be an integer >= 1, found 2.0 (float)
    """
    return check_int(value, what, 1)


def check_choice(value: Any, what: str, choices: Sequence[str]) -> str:
    if value not in choices:
        names = " or ".join(repr(c) for c in choices) if len(choices) == 2 else ", ".join(repr(c) for c in choices)
        raise OptionError(f"{what} must be {'one of ' if len(choices) > 2 else ''}{names}, found {value!r}")
    return value


def check_globs(value: Any, what: str) -> tuple[str, ...]:
    """One glob or a sequence of globs over qualified module names, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise OptionTypeError(f"{what} must be glob strings over qualified module names, found {value!r}")
    return tuple(value)


def check_module(value: Any, what: str = "model") -> Any:
    """A torch.nn.Module (imported lazily: this module stays importable without torch)."""
    from torch import nn

    if not isinstance(value, nn.Module):
        raise OptionTypeError(f"{what} must be a torch.nn.Module, found {type(value).__name__}")
    return value
