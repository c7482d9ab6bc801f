"""The error types octify raises for a model it cannot handle or a feature it cannot run."""


class ConversionError(RuntimeError):
    """A model could not be traced, converted or verified. The message ends with a Hint."""


class MissingDependency(ImportError):
    """An optional dependency a feature needs is not installed. The message says which extra to install."""


class ExportError(RuntimeError):
    """A model could not be exported, or the exported file does not give the model's numbers."""
