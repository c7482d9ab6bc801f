"""A griffe extension for the API pages: octify's docstrings are prose in reST habits, which
mkdocstrings renders as Markdown. Before it does, doctest examples (``>>>`` lines and their
output) become fenced ``pycon`` code blocks -- without that a line such as
``r.finetune["history"][0]`` reads as a Markdown reference link, and ``mkdocs build --strict``
fails on the unknown reference -- and Sphinx roles (``:func:`x```) become code spans.

Registered in mkdocs.yml under the python handler's ``extensions``.
"""

from __future__ import annotations

import re
from typing import Any, List

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|obj|exc|const):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (a ``>>>`` line, its ``...`` continuations and its output,
    up to the next blank line) in a fenced code block, at the run's own indentation.

    >>> fence_doctests("Text.\\n>>> 1 + 1\\n2\\n\\nMore.").splitlines()
    ['Text.', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'More.']
    """
    out: List[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if out and out[-1].strip():
            out.append("")  # a fence must not continue a paragraph
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def markdown_docstring(text: str) -> str:
    """A docstring as the API pages render it: doctests fenced, Sphinx roles as code spans.

    >>> markdown_docstring("See :func:`octify.convert` and :class:`~octify.nn.OctConv2d`.")
    'See `octify.convert` and `octify.nn.OctConv2d`.'
    """
    return fence_doctests(_ROLE.sub(r"`\1`", text)) if (">>>" in text or ":`" in text) else text


class DoctestFences(griffe.Extension):
    """Fence the doctests (and unwrap the roles) of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
