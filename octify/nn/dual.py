"""OctaveDual: apply one module to both octave branches (the Keras seed's ``octave_dual``)."""

from __future__ import annotations

from torch import nn

from .octconv import OctaveInput, OctaveOutput

__all__ = ["OctaveDual"]


class OctaveDual(nn.Module):
    """Apply ``module`` to the high and to the low branch alike: pooling, activations, dropout (Chen et al., 2019).

    The module (and its parameters, if any) is shared by both branches. A plain Tensor passes
    through ``module`` once.

    >>> import torch
    >>> relu = OctaveDual(torch.nn.ReLU())
    >>> h, l = relu((-torch.ones(1, 2, 4, 4), torch.ones(1, 2, 2, 2)))
    >>> float(h.sum()), float(l.sum())
    (0.0, 8.0)
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"OctaveDual expects an nn.Module, found {type(module).__name__}")
        self.module = module

    def forward(self, x: OctaveInput) -> OctaveOutput:
        if isinstance(x, tuple):
            return self.module(x[0]), self.module(x[1])
        return self.module(x)
