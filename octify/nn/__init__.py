"""Octave layers (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049)."""

from .batchnorm import OctBatchNorm2d
from .dual import OctaveDual
from .octconv import OctConv2d
from .partition import Partition
from .split_merge import OctaveMerge, OctaveSplit

__all__ = ["OctConv2d", "OctBatchNorm2d", "OctaveDual", "OctaveSplit", "OctaveMerge", "Partition"]
