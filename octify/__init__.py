"""octify: turn PyTorch CNNs into Octave-Convolution networks, with their weights.

The public API is this package's ``__all__``, the layers of :mod:`octify.nn`, the rule
interface of :mod:`octify.rules` and the command line. Internals live in subpackages:
:mod:`octify.fx` (the conversion pass, a file per stage), :mod:`octify.tune` (fidelity,
calibration, distillation), :mod:`octify.report`,
:mod:`octify.cli`, :mod:`octify.utils`.

The names below are imported on first use (PEP 562), so that ``import octify.cli`` (and
``octify --help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "convert": ".convert",
    "freeze": ".fx.freeze",
    "fold_bn": ".fx.fold",
    "export": ".export",
    "fidelity": ".tune.fidelity",
    "finetune": ".tune.distill",
    "reconstruct": ".tune.reconstruct",
    "ConvertOptions": ".options",
    "FinetuneOptions": ".options",
    "StepInfo": ".tune.distill",
    "ExportResult": ".export",
    "ExportError": ".errors",
    "MissingDependency": ".errors",
    "record_of": ".record",
    "ConversionError": ".errors",
    "OptionError": ".errors",
    "ConversionRecord": ".record",
    "ConvRecord": ".record",
    "MergeRecord": ".record",
    "register_rule": ".rules",
    "OctConv1d": ".nn",
    "OctConv2d": ".nn",
    "OctConv3d": ".nn",
    "OctBatchNorm1d": ".nn",
    "OctBatchNorm2d": ".nn",
    "OctBatchNorm3d": ".nn",
    "OctaveDual": ".nn",
    "OctaveSplit": ".nn",
    "OctaveMerge": ".nn",
    "Partition": ".nn",
    "save": ".io",
    "load": ".io",
    "profile": ".report",
    "compare": ".report",
    "Profile": ".report",
    "Comparison": ".report",
}

__all__ = [*_EXPORTS, "__version__"]

_SUBPACKAGES = ("nn", "fx", "report", "tune", "utils", "cli", "rules", "record", "io", "errors", "options")


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'octify' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``octify.convert`` and ``octify.export`` name both a function and the module defining it.
    Importing such a module sets it as an attribute of the package, which would hide the
    function from ``__getattr__``: the package keeps its public names instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
