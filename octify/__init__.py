"""octify: turn PyTorch CNNs into Octave-Convolution networks, with their weights.

The public API is this package's ``__all__``, the layers of :mod:`octify.nn`, the rule
interface of :mod:`octify.rules` and the command line. Internals live in subpackages:
:mod:`octify.fx` (the conversion pass, a file per stage), :mod:`octify.tune` (fidelity,
calibration, distillation), :mod:`octify.report`,
:mod:`octify.cli`, :mod:`octify.utils`.
"""

from .convert import convert
from .errors import ConversionError, ExportError, MissingDependency
from .export import ExportResult, export
from .tune.distill import FinetuneOptions, StepInfo, finetune
from .tune.fidelity import fidelity
from .fx.fold import fold_bn
from .fx.freeze import freeze
from .io import load, save
from .nn import OctBatchNorm1d, OctBatchNorm2d, OctBatchNorm3d, OctConv1d, OctConv2d, OctConv3d, OctaveDual, OctaveMerge, OctaveSplit, Partition
from .record import ConversionRecord, ConvRecord, MergeRecord, record_of
from .report import Comparison, Profile, compare, profile
from .rules import register_rule

__version__ = "0.1.0"

__all__ = [
    "convert",
    "freeze",
    "fold_bn",
    "export",
    "fidelity",
    "finetune",
    "FinetuneOptions",
    "StepInfo",
    "ExportResult",
    "ExportError",
    "MissingDependency",
    "record_of",
    "ConversionError",
    "ConversionRecord",
    "ConvRecord",
    "MergeRecord",
    "register_rule",
    "OctConv1d",
    "OctConv2d",
    "OctConv3d",
    "OctBatchNorm1d",
    "OctBatchNorm2d",
    "OctBatchNorm3d",
    "OctaveDual",
    "OctaveSplit",
    "OctaveMerge",
    "Partition",
    "save",
    "load",
    "profile",
    "compare",
    "Profile",
    "Comparison",
    "__version__",
]
