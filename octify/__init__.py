"""octify: turn PyTorch CNNs into Octave-Convolution networks, with their weights."""

from .nn import OctBatchNorm2d, OctConv2d, OctaveDual, OctaveMerge, OctaveSplit, Partition

__version__ = "0.1.0"

__all__ = [
    "OctConv2d",
    "OctBatchNorm2d",
    "OctaveDual",
    "OctaveSplit",
    "OctaveMerge",
    "Partition",
    "__version__",
]
