"""Stage 6, memory format: the converted model's 4-D weights laid out channels-last.

Its many small convolutions run fastest channels-last on a CPU (benchmarks/latency.py); inputs
in either layout are accepted. Only 4-D tensors have that layout: the weights of Conv1d / Conv3d
layers and every other tensor stay as they are.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["to_channels_last"]


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with every 4-D parameter and buffer channels-last (in place, as ``Module.to``)."""
    return model._apply(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)
