"""Stage 3c: the name globs of ``exclude`` and ``alpha_for`` that matched no conv, warned about.

A glob that matches nothing is almost always a typo (``layers4.*``) or names a container instead
of its convs (``layer1`` for ``layer1.*``); either way the conversion silently does something
else than asked, so each one gets a warning that names it and what it comes closest to.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Iterable, List, Mapping, Sequence

from torch import nn

from ..utils.warn import warn_user

__all__ = ["unmatched_glob_messages", "warn_unmatched_globs"]


def _ancestors(name: str) -> Iterable[str]:
    parts = name.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts)))


def unmatched_glob_messages(
    conv_names: Sequence[str], modules: Mapping[str, nn.Module], option: str, globs: Iterable[str]
) -> List[str]:
    """One message per glob of ``option`` that matches none of ``conv_names``."""
    messages = []
    containers = sorted({a for n in conv_names for a in _ancestors(n)})
    for glob in globs:
        if any(fnmatch.fnmatchcase(n, glob) for n in conv_names):
            continue
        text = f"octify: {option} {glob!r} matches no conv, so it changes nothing"
        hit = next((n for n in modules if n and fnmatch.fnmatchcase(n, glob)), None)
        if hit is not None:
            text += f"; it matches {hit} ({type(modules[hit]).__name__}), which is not a conv"
            if hit in containers:
                text += f". Hint: '{hit}.*' matches the convs inside it"
        else:
            bare = glob.replace("*", "").replace("?", "").strip(".")
            close = difflib.get_close_matches(bare, list(conv_names) + containers, n=3, cutoff=0.6)
            if close:
                shown = ", ".join(f"'{c}.*'" if c in containers else f"'{c}'" for c in close)
                text += f". Hint: did you mean {shown}?"
            elif conv_names:
                text += f" (conv names look like '{conv_names[0]}')"
        messages.append(text)
    return messages


def warn_unmatched_globs(
    conv_names: Sequence[str], modules: Mapping[str, nn.Module], exclude: Sequence[str], alpha_for: object
) -> None:
    globs = {"exclude": list(exclude)}
    if isinstance(alpha_for, Mapping):  # a callable alpha_for has no globs to check
        globs["alpha_for"] = list(alpha_for)
    for option, values in globs.items():
        for text in unmatched_glob_messages(conv_names, modules, option, values):
            warn_user(text)
