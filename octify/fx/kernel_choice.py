"""Which 1x1 octave convs of a frozen model run as matrix products: timed, layer by layer.

Whether a 1x1 conv is faster as oneDNN's convolution or as one ``mm`` / ``addmm`` over the pixels
depends on its channels, its map and the CPU: here, with torch 2.14, the products win by a third on
MobileNetV2's thin 1x1 convs and lose on ResNet-50's wide ones at batch 8. So ``octify.freeze``
runs the model once on example inputs, times each 1x1 octave layer both ways on the input it got
there, and keeps the faster (both compute the same function, so only time depends on it).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, List, Tuple

import torch
from torch import nn

from ..nn import OctConv2d
from ..utils.runtime import device_of, module_values, sync

__all__ = ["choose_matmul"]


def _times(layer: OctConv2d, args: tuple, matmul: bool, reps: int) -> List[float]:
    layer.use_matmul(matmul)
    device = device_of(layer)
    out = []
    for _ in range(reps):
        sync(device)  # a GPU runs asynchronously: time the kernels, not their launch
        t0 = time.perf_counter()
        layer(*args)
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def choose_matmul(model: nn.Module, inputs: Tuple[Any, ...], reps: int = 7, margin: float = 0.05) -> List[str]:
    """Time every 1x1 octave layer of ``model`` both ways on what ``model(*inputs)`` feeds it and
    turn :meth:`OctConv2d.use_matmul` on where the products are faster by more than ``margin``;
    returns the names of those layers."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, OctConv2d) and m.pointwise}
    if not layers:
        return []
    for m in layers.values():
        m.use_matmul(False)
    chosen = []
    for name, args in module_values(model, layers, inputs, inputs_of=True).items():
        layer = layers[name]
        conv: List[float] = []
        mm: List[float] = []
        with torch.inference_mode():
            _times(layer, args, True, 1)  # warm both up
            _times(layer, args, False, 1)
            for _ in range(reps):  # alternated, so that neither always runs on a warmer cache
                conv += _times(layer, args, False, 1)
                mm += _times(layer, args, True, 1)
        use = statistics.median(mm) < (1 - margin) * statistics.median(conv)
        layer.use_matmul(use)
        if use:
            chosen.append(name)
    return chosen
