"""Octave layers (Chen et al., "Drop an Octave", ICCV 2019, arXiv 1904.05049).

The layers a user builds with (``OctConv2d``, ``OctBatchNorm2d``, their 1-D and 3-D forms, ``OctGroupNorm``, ``OctaveDual``,
``OctaveSplit``, ``OctaveMerge``, ``Partition``), and the ones the conversion pass inserts
between them (``ChannelMerge``, ``ChannelSplit``, ``Realign``, ``SharedStochasticDepth``):
all of them have stable paths here, since saved models refer to them. ``cost`` holds the
theoretical MACs and memory ratios of an octave conv.
"""

from .batchnorm import OctBatchNorm1d, OctBatchNorm2d, OctBatchNorm3d
from .channels import ChannelMerge, ChannelSplit
from .dual import OctaveDual
from .groupnorm import OctGroupNorm
from .norm_act import OctNormAct
from .octconv import OctConv2d
from .octconv_nd import OctConv1d, OctConv3d
from .octconv_transpose import OctConvTranspose2d
from .partition import Partition
from .realign import Realign
from .split_merge import OctaveMerge, OctaveSplit
from .stochastic_depth import SharedStochasticDepth

__all__ = [
    "OctConv1d", "OctConv2d", "OctConv3d", "OctConvTranspose2d", "OctBatchNorm1d", "OctBatchNorm2d", "OctBatchNorm3d", "OctaveDual", "OctaveSplit", "OctaveMerge", "Partition",
    "OctGroupNorm", "OctNormAct", "ChannelMerge", "ChannelSplit", "Realign", "SharedStochasticDepth",
]
