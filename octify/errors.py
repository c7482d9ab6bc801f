"""The error types octify raises for a model it cannot handle or a feature it cannot run."""


from typing import Optional


class ConversionError(RuntimeError):
    """A model could not be traced, converted or verified: ``message`` says what, ``hint`` what to
    do in the library's words (its arguments), ``cli_hint`` the same with the command line's flags
    where they differ (the command line prints that one). ``str(e)`` is ``"message Hint: hint"``.

    >>> e = ConversionError("torch.fx cannot trace Net.", hint="pass leaf_modules=[Block].", cli_hint="pass --leaf Block.")
    >>> str(e)
    'torch.fx cannot trace Net. Hint: pass leaf_modules=[Block].'
    """

    def __init__(self, message: str, hint: Optional[str] = None, cli_hint: Optional[str] = None) -> None:
        super().__init__(f"{message} Hint: {hint}" if hint else message)
        self.message, self.hint, self.cli_hint = message, hint, cli_hint


class OptionError(ValueError):
    """An option or argument has a value octify cannot use; the message says what was expected
    and what was found. The command line reports it as a usage error (exit code 2)."""


class OptionTypeError(OptionError, TypeError):
    """An option or argument of the wrong type (a TypeError as well, as Python's own are)."""


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
