"""SharedStochasticDepth: torchvision's StochasticDepth for an octave pair."""

from __future__ import annotations

from typing import Tuple, Union

from torch import Tensor, nn

__all__ = ["SharedStochasticDepth"]


class SharedStochasticDepth(nn.Module):
    """torchvision's StochasticDepth for a pair: one drop decision per sample for both branches
    (dropping a residual branch drops both of its octaves, as the plain block drops all channels).

    >>> import torch
    >>> sd = SharedStochasticDepth(0.5, "row").eval()   # identity in eval mode
    >>> h, l = sd((torch.ones(2, 4, 8, 8), torch.ones(2, 4, 4, 4)))
    >>> float(h.sum()), float(l.sum())
    (512.0, 128.0)
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]]) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        if not self.training or self.p == 0.0:
            return x
        ref = x[0] if isinstance(x, tuple) else x
        size = [ref.shape[0], 1, 1, 1] if self.mode == "row" else [1, 1, 1, 1]
        survival = 1.0 - self.p
        noise = ref.new_empty(size).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        if isinstance(x, tuple):
            return x[0] * noise, x[1] * noise
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
