"""Convolutions sent to oneDNN whatever their size: the kernel ``octify.freeze(conv3d="onednn")`` picks.

At batch 1 PyTorch runs a conv whose batch x channels x leading spatial sizes is at most 20480
(and whose kernel is at most 3 wide) with its own im2col kernel instead of oneDNN's; for 3-D convs
that kernel (``slow_conv3d_forward``) is several times slower, and octave layers, with half the
channels per path and half the height on the low branch, fall under that line far more often than
the convs they replace (47 of r3d_18's 49 branch convs). ``torch.mkldnn_convolution`` runs oneDNN
directly. It has no shape function, so a model that calls it runs in eager mode and TorchScript
but does not export (torch.export, ONNX) or compile: freeze without it for those.
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OneDNNConv3d", "onednn_applies"]


def onednn_applies(x: Tensor) -> bool:
    """Whether oneDNN's kernel takes ``x`` (CPU, float32 or bfloat16); other inputs keep torch's choice."""
    return x.device.type == "cpu" and (x.dtype == torch.float32 or x.dtype == torch.bfloat16)


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN's kernel on the inputs it takes (:func:`onednn_applies`):
    the same function, the same parameters and state dict. ``octify.freeze(conv3d="onednn")``
    turns the plain Conv3d layers of a model into it (zero padding given as numbers only)."""

    @staticmethod
    def takes(conv: nn.Module) -> bool:
        """Whether ``conv`` is a Conv3d (torchvision's ``Conv3DSimple`` and the like included) that
        computes as ``nn.Conv3d`` does, with zero padding given as numbers."""
        kind = type(conv)
        return (
            isinstance(conv, nn.Conv3d) and kind.forward is nn.Conv3d.forward and kind._conv_forward is nn.Conv3d._conv_forward
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv3d) -> "OneDNNConv3d":
        """``conv`` itself, its class changed (its parameters stay the same objects)."""
        if not cls.takes(conv):
            raise ValueError(f"OneDNNConv3d: expected an nn.Conv3d with zero padding given as numbers, found {conv}")
        conv.__class__ = cls
        return conv  # type: ignore[return-value]

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        padding: List[int] = [int(p) for p in self.padding]
        if onednn_applies(input):
            return torch.mkldnn_convolution(input, weight, bias, padding, list(self.stride), list(self.dilation), self.groups)
        return F.conv3d(input, weight, bias, self.stride, padding, self.dilation, self.groups)
