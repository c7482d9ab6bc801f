"""The deployed forms the speed benchmarks time, in one place: a model compiled by inductor with
freezing, and README's int8 flow (torchao's PT2E, X86InductorQuantizer, then compiled the same
way). ``latency.py --deploy``, ``profile_ops.py`` and ``quantize.py`` all measure these.

    fast = compiled(octify.freeze(model), x)                       # one warm-up call on x included
    q = int8(for_int8(converted), calibration)                      # compiled, warmed up on calibration[0]
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

import octify

# What each deployed setting set out to reach (issue 24): the octave model's time over the best
# plain configuration's, keyed by (form, threads, batch).
TARGETS = {("eager", 2, 1): 0.75, ("eager", 2, 8): 0.62, ("eager", 1, 1): 0.65, ("compiled", 2, 1): 0.70,
           ("compiled", 2, 8): 0.62, ("int8", 2, 1): 0.80, ("int8", 2, 8): 0.80}


def for_int8(model: nn.Module) -> torch.fx.GraphModule:
    """README's int8 flow's freeze: 1x1 octave convs kept as convs (the quantizer annotates convs,
    not matrix products), and each layer's L->H merged into its low conv (two int8 convs per layer)."""
    return octify.freeze(model, matmul_1x1=False, merge_lh=True)


def compiled(model: nn.Module, x: torch.Tensor) -> Callable:
    """``torch.compile`` with inductor freezing (constant weights: oneDNN prepacked convolutions,
    int8 ones too), warmed up on ``x``."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    inductor_config.compile_threads = 1
    fast = torch.compile(model)
    with torch.inference_mode():
        fast(x)
    return fast


def quantize(model: nn.Module, calibration: list[torch.Tensor], dynamic_batch: bool = False) -> torch.fx.GraphModule:
    """PT2E: export (strict; with a dynamic batch if asked, as README's flow), annotate for x86
    inductor, calibrate, convert to q/dq form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    dynamic = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
    gm = torch.export.export(model, (calibration[0],), dynamic_shapes=dynamic, strict=True).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    return convert_pt2e(prepared)


def int8(model: nn.Module, calibration: list[torch.Tensor]) -> Callable:
    """README's int8 flow with a dynamic batch, compiled."""
    return compiled(quantize(model, calibration, dynamic_batch=True), calibration[0])
