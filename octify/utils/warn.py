"""Warnings that point at the user's code: the first frame outside octify, however deep the
pass called from (a fixed ``stacklevel`` goes stale whenever the call chain changes)."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Type

__all__ = ["warn_user"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_user(message: str, category: Type[Warning] = UserWarning) -> None:
    """``warnings.warn(message)`` attributed to the nearest caller outside the octify package.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("octify: a note")
    >>> caught[0].filename.startswith(_PACKAGE)
    False
    """
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
