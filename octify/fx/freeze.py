"""freeze (after the pass, on request): the inference form of a model, computed once.

``octify.convert`` returns a plain model: every layer computes from its parameters on every call,
the same code in training and in eval, so each write to a weight is seen and every exporter and
tracer sees what eager mode runs. The speed-ups that only hold while the weights stay as they are
are applied here, explicitly, and produce a new model (in the spirit of ``torch.jit.freeze``):

1. batch norms folded into the convs in front of them (``fold_bn``): new conv weights, no norms;
2. a plain model's residual sums written in place, as ``octify.convert`` writes a converted
   model's (the original's ``out += identity``, which torch.fx records as ``out + identity``);
3. each OctConv2d that runs H->L and L->L as one conv stores its [hl | ll] weight once
   (``OctConv2d.fuse_low_weights``) instead of concatenating it per call;
4. with ``memory_format="channels_last"`` (the default), every 4-D weight channels-last, and
   the 1x1 octave convs that run faster as matrix products over the pixels do so
   (``OctConv2d.use_matmul``): ``matmul_1x1="auto"`` times each both ways on example inputs
   (``kernel_choice``); ``True`` / ``False`` for all or none (``False`` for int8 quantization:
   quantizers annotate convolutions, not matrix products); a list of layer names for exactly
   those (what ``octify.load`` replays, with no timing);
5. with ``conv3d="onednn"``, every 3-D conv, plain or octave, run by oneDNN
   (``torch.mkldnn_convolution``), whatever PyTorch's size rule would pick;
6. with ``merge_lh=True``, each octave conv that runs as convs computes L->H in its low
   output's conv (``OctConvNd.merge_lh``): two convs per layer instead of three, with zeros in
   the merged weight. For int8 (a fixed cost per conv call), not for float, where the extra
   multiply-adds cost more than the call saved.

The settings are kept with the result (``record_of(frozen).frozen``; for a model octify did not
convert, ``frozen.meta["octify.freeze"]``, with the shapes of the inputs its sums were found
on), ``matmul_1x1`` as the names of the layers it chose.

The frozen model is again an ordinary module with no cache and no mode-dependent code: it
exports, traces and scripts like the converted one, and writing to its parameters changes its
outputs. What it no longer has is the original's parameters (the batch norms are gone), so
train or fine-tune the converted model and freeze again afterwards.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import torch.fx as fx
from torch import Tensor, nn

from ..nn import OctConv2d
from ..nn.octconv import OctConvNd
from ..record import attach_record, find_record, recorded_inputs
from ..nn.onednn import OneDNNConv3d
from ..utils.choices import CONV3D_KERNELS, MEMORY_FORMATS
from ..utils.inputs import default_inputs, describe, normalize_inputs
from ..utils.validate import check_bool, check_choice, check_module
from .fold import as_graph_module, fold_graph
from .inplace import plain_sums_in_place
from .kernel_choice import choose_matmul
from .layout import contiguous_before_layout_reads, to_channels_last
from .narrow import narrow_outputs

__all__ = ["freeze", "FREEZE_META", "SETTINGS"]

FREEZE_META = "octify.freeze"  # gm.meta key of a frozen plain model's settings (a converted one keeps them in its record)
SETTINGS = ("fold_bn", "memory_format", "conv3d", "merge_lh", "matmul_1x1")  # the arguments kept with the result, which octify.load replays


def freeze(
    model: nn.Module, *, fold_bn: bool = True, memory_format: str = "channels_last",
    matmul_1x1: Union[bool, str, Sequence[str]] = "auto", example_inputs: Any = None, inplace: bool = False, conv3d: str = "torch",
    merge_lh: bool = False,
) -> fx.GraphModule:
    """The inference form of ``model`` (see the module docstring): batch norms folded, fused
    low weights stored once, channels-last weights, 1x1 octave convs as matrix products where
    that is faster.

    ``matmul_1x1="auto"`` times the two kernels of each 1x1 octave conv on the inputs the layer
    gets from ``example_inputs`` (default: random inputs of the shapes the model was converted
    on; pass the batch size you will run), so which layers use them can differ between runs;
    the numbers do not (float rounding aside). A list or tuple of layer names turns the products on
    for exactly those layers (``record_of(frozen).frozen["matmul_1x1"]`` names the ones chosen).

    ``model`` is a converted model (or a plain one, traced with torch.fx first, so that a
    benchmark can give the original the same treatment) in eval mode. It is copied unless
    ``inplace=True``. ``conv3d="onednn"`` sends every 3-D conv to oneDNN (item 5 above; video
    models on a CPU, eager mode); ``merge_lh=True`` merges each octave conv's L->H path into its
    low output's conv (item 6; README's int8 flow). The result computes the same function (float rounding aside) and keeps
    the conversion record, whose ``fused`` lists the (conv, batch norm) pairs folded.

    >>> import torch, torchvision, octify
    >>> net = torchvision.models.resnet18().eval()
    >>> frozen = octify.freeze(octify.convert(net, octave=1))     # octave=1: the same function
    >>> x = torch.randn(1, 3, 64, 64)
    >>> bool((frozen(x) - net(x)).abs().max() < 1e-3)
    True
    >>> any(isinstance(m, (torch.nn.BatchNorm2d, octify.OctBatchNorm2d)) for m in frozen.modules())
    False
    """
    check_module(model, "octify.freeze: model")
    check_choice(memory_format, "octify.freeze: memory_format", MEMORY_FORMATS)
    check_choice(conv3d, "octify.freeze: conv3d", CONV3D_KERNELS)
    check_bool(merge_lh, "octify.freeze: merge_lh")
    names = _matmul_names(matmul_1x1)
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"octify.freeze makes an inference model, but {len(training)} module(s) are in training mode "
            f"({', '.join(training[:3])}{', ...' if len(training) > 3 else ''}). Hint: call model.eval() first."
        )
    record = find_record(model)  # None: freeze also takes models octify did not convert
    if example_inputs is not None:
        inputs = normalize_inputs(example_inputs, "octify.freeze")
    else:
        inputs = recorded_inputs(model) or default_inputs(model)
    traced_here = not isinstance(model, fx.GraphModule)
    gm = as_graph_module(model, inplace)
    folded = fold_graph(gm) if fold_bn else []
    channels_last = memory_format == "channels_last"
    for m in gm.modules():
        if isinstance(m, OctConvNd):  # 1-D and 3-D layers too (only 2-D ones are pointwise)
            m.fuse_low_weights()
            if matmul_1x1 is True and m.pointwise:
                m.use_matmul()
            if conv3d == "onednn" and m._nd == 3:
                m.use_onednn()
        elif conv3d == "onednn" and OneDNNConv3d.takes(m):
            OneDNNConv3d.from_conv(m)
    if channels_last:
        to_channels_last(gm)
        if traced_here:  # a plain model's own ``x.view(N, -1)`` must see the layout it was written for
            contiguous_before_layout_reads(gm)
    if names is not None:
        _use_matmul(gm, names)
    elif matmul_1x1 == "auto" and channels_last and any(isinstance(m, OctConv2d) and m.pointwise for m in gm.modules()):
        choose_matmul(gm, inputs)
    if merge_lh:  # after the kernel choice: layers that run as matrix products keep their three paths
        for m in gm.modules():
            if isinstance(m, OctConvNd):
                m.merge_lh()
    narrow_outputs(gm)
    if record is None:
        plain_sums_in_place(gm, inputs)
    settings = {
        "fold_bn": bool(fold_bn), "memory_format": memory_format, "conv3d": conv3d, "merge_lh": merge_lh,
        "matmul_1x1": [name for name, m in gm.named_modules() if isinstance(m, OctConvNd) and getattr(m, "_matmul", False)],
    }
    if record is not None:
        attach_record(gm, dataclasses.replace(record, fused=list(folded), frozen=settings))
    else:
        # The shapes its sums were found on, so that octify.load writes the same ones in place.
        gm.meta[FREEZE_META] = {**settings, "inputs": describe(inputs) if all(isinstance(v, Tensor) for v in inputs) else None}
    return gm


def _matmul_names(matmul_1x1: Any) -> Optional[list]:
    """None for True, False or "auto"; the names of a list or tuple; ValueError for anything else."""
    if isinstance(matmul_1x1, (list, tuple)) and all(isinstance(n, str) for n in matmul_1x1):
        return list(matmul_1x1)
    if matmul_1x1 is True or matmul_1x1 is False or (isinstance(matmul_1x1, str) and matmul_1x1 == "auto"):
        return None
    raise ValueError(
        f"octify.freeze: matmul_1x1 must be True, False, 'auto' or a list of layer names, found {matmul_1x1!r}"
    )


def _use_matmul(gm: fx.GraphModule, names: Sequence[str]) -> None:
    """Matrix products in exactly the 1x1 octave layers ``names``; ValueError naming the others."""
    layers = {name: m for name, m in gm.named_modules() if isinstance(m, OctConvNd)}
    unknown = [n for n in names if n not in layers or not layers[n].pointwise]
    if unknown:
        raise ValueError(
            f"octify.freeze: matmul_1x1 names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
            f"not a 1x1 octave conv of the model: expected names of its pointwise OctConv2d layers"
        )
    for name, m in layers.items():
        if m.pointwise:
            m.use_matmul(name in names)
