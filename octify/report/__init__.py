"""The report: MACs, FLOPs, parameters, feature-map bytes and latency, per layer and before/after."""

from .comparison import Comparison, ConvRow, LayerPair, compare
from .profiling import LayerRow, Profile, profile
from ..nn.cost import octave_bytes_ratio, octave_macs_ratio

__all__ = [
    "profile",
    "compare",
    "Profile",
    "Comparison",
    "LayerRow",
    "LayerPair",
    "ConvRow",
    "octave_macs_ratio",
    "octave_bytes_ratio",
]
