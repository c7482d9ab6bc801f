"""octify: turn PyTorch CNNs into Octave-Convolution networks, with their weights."""

from ._errors import ConversionError
from .convert import convert
from .fold import fold_bn
from .nn import OctBatchNorm2d, OctConv2d, OctaveDual, OctaveMerge, OctaveSplit, Partition
from .record import ConversionRecord, ConvRecord, MergeRecord, record_of
from .rules import register_rule
from .report import Comparison, Profile, compare, profile
from .io import load, save

__version__ = "0.1.0"

__all__ = [
    "convert",
    "fold_bn",
    "record_of",
    "ConversionError",
    "ConversionRecord",
    "ConvRecord",
    "MergeRecord",
    "register_rule",
    "OctConv2d",
    "OctBatchNorm2d",
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
