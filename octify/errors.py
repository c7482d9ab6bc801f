"""The one error type octify raises for a model it cannot handle."""


class ConversionError(RuntimeError):
    """A model could not be traced, converted or verified. The message ends with a Hint."""
