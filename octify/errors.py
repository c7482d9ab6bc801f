"""The error types octify raises for a model it cannot handle or a feature it cannot run."""


from typing import Optional


class ConversionError(RuntimeError):
    """A model could not be traced, converted or verified. The message ends with a Hint in the
    library's words (its arguments); ``cli_hint`` says the same with the command line's flags,
    where they differ, and the command line prints that one instead."""

    def __init__(self, message: str, cli_hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.cli_hint = cli_hint


def first_line(e: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``: torch's errors go on for paragraphs (how to rerun with
    logging, a URL); the first line is what went wrong."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class MissingDependency(ImportError):
    """An optional dependency a feature needs is not installed. The message says which extra to install."""


class ExportError(RuntimeError):
    """A model could not be exported, or the exported file does not give the model's numbers."""
