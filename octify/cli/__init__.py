"""The ``octify`` command line.

- :mod:`.app`: the typer commands (thin: typed options in, one call out);
- :mod:`.options`: each option's text to its typed, validated value;
- :mod:`.commands`: what ``convert`` and ``report`` do, over the library;
- :mod:`.loading` and :mod:`.weights`: MODEL and ``--weights`` to a model;
- :mod:`.console`: output, progress, and the one error boundary.
"""

from .app import app, main

__all__ = ["app", "main"]
