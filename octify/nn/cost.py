"""The theoretical cost of an octave conv relative to the plain conv it replaces (Chen et al., 2019).

Used by the pass (the latency policy's estimate) and by the report (the theory column).
Four paths, with ``ai = alpha_in``, ``ao = alpha_out`` and ``f = 1 / octave**2`` (the area of
the low grid relative to the high one, a quarter for octave 2)::

    H->H  (1-ai)(1-ao)  at full resolution
    H->L  (1-ai) ao     pooled first: at 1/octave^2 of the area
    L->H  ai (1-ao)     at low resolution, then upsampled: 1/octave^2
    L->L  ai ao         1/octave^2

    MACs ratio = (1-ai)(1-ao) + f * ((1-ai) ao + ai (1-ao) + ai ao)
               = (1-ai)(1-ao) + f * (1 - (1-ai)(1-ao))

For ai = ao = a and octave 2 this is 1 - 3/4 a (2 - a). The output feature map keeps
(1-ao) of the channels at full size and ao at 1/octave^2: ``(1-ao) + f ao`` (1 - 3/4 a).
Pooling and upsampling are not counted. Exact on sizes divisible by the octave (and stride).
Over ``axes`` resampled axes (1 for Conv1d, 2 for Conv2d and for Conv3d with time kept, 3 with
``octave_time``) the low grid's share is ``f = 1 / octave**axes``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .octconv import OctConvNd

__all__ = ["octave_macs_ratio", "octave_bytes_ratio", "conv_macs_ratio"]


def octave_macs_ratio(alpha_in: float, alpha_out: float, octave: int = 2, *, depthwise: bool = False, axes: int = 2) -> float:
    """MACs of an octave conv over those of the plain conv (the four paths above).

    A depthwise octave conv has no cross paths: with octify's nested split (the last
    ``floor(alpha * C)`` channels low) the channels low on either side run at low resolution.

    >>> octave_macs_ratio(0.5, 0.5)
    0.4375
    >>> octave_macs_ratio(0.0, 0.5)    # first layer: H->H and H->L
    0.625
    """
    f = 1.0 / octave**axes
    if depthwise:
        a = max(alpha_in, alpha_out)
        return (1.0 - a) + a * f
    hh = (1.0 - alpha_in) * (1.0 - alpha_out)
    return hh + f * ((1.0 - alpha_in) * alpha_out + alpha_in * (1.0 - alpha_out) + alpha_in * alpha_out)


def octave_bytes_ratio(alpha_out: float, octave: int = 2, axes: int = 2) -> float:
    """Output feature-map bytes of an octave conv over the plain conv's: ``(1-ao) + ao / octave**2``.

    >>> octave_bytes_ratio(0.5)
    0.625
    """
    return (1.0 - alpha_out) + alpha_out / octave**axes


def conv_macs_ratio(conv: "OctConvNd") -> float:
    """``octave_macs_ratio`` from a layer's own partitions (exact for any partition).

    A depthwise layer convolves each channel once: at full resolution when it is high on both
    sides, at low resolution when it is low on either side.
    """
    f = 1.0 / conv.octave ** getattr(conv, "_axes", 2)
    pin, pout = conv.in_partition, conv.out_partition
    if conv.depthwise:
        low_somewhere = len(set(pin.low) | set(pout.low))
        return (conv.in_channels - low_somewhere + f * low_somewhere) / conv.in_channels
    ih, il, oh, ol = len(pin.high), len(pin.low), len(pout.high), len(pout.low)
    return (ih * oh + f * (ih * ol + il * oh + il * ol)) / (conv.in_channels * conv.out_channels)
