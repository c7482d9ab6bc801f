"""``octify.reconstruct``: fit each octave conv to the original conv it replaced, from unlabeled data.

What BRECQ / AdaRound do for quantization, here for octave conversion, layer by layer in the
order the converted model runs them: each octave conv is given the input the converted model
itself feeds it (so the errors earlier layers leave are compensated, not ignored) and fitted to
reproduce the original conv's output on the original model's own input. Every output of a dense
octave conv is linear in its path weights, so the fit is a least-squares problem with a closed-form
answer, no learning rate and no steps:

- the high output ``conv(xh, W_hh) + up(conv(xl, W_lh)) + b_h`` against the original's high
  channels, over every output pixel;
- the low output ``conv(pool(xh), W_hl) + conv(xl, W_ll) + b_l`` against the original's low
  channels average-pooled one octave down (what nearest upsampling reproduces best in the
  least-squares sense).

The normal equations are summed over the batches (at most ``rows`` output pixels sampled per
batch) in float64 and solved with a small ridge towards the current weights, which keeps the
directions the data does not see where they were. Layers that are not dense 2-D convs (depthwise,
grouped, 1-D / 3-D, pool stride mode, other padding modes) keep their weights. The model is
measured against the original on the data before and after (:func:`~octify.fidelity`); if it is
worse after, the weights from before are returned and the record says so.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..fx.shape_prop import eval_mode
from ..nn import OctConv2d
from ..nn._resample import downsample, low_shape, upsample_to
from ..record import find_record
from ..utils.validate import check_int, check_module, check_number
from .data import batches_of, to_device
from .fidelity import fidelity

__all__ = ["reconstruct", "LayerFit"]

WHO = "octify.reconstruct"


class _Stop(Exception):
    """Raised by a hook once it has what it came for: the rest of the forward is not needed."""


def fits(layer: nn.Module) -> bool:
    """Whether :func:`reconstruct` can fit ``layer``: a dense, ungrouped, zero-padded 2-D OctConv2d
    with its four path weights (not frozen) and its stride in the convs."""
    return (
        isinstance(layer, OctConv2d) and not layer.depthwise and layer.groups == 1 and layer.padding_mode == "zeros"
        and not layer._pool and layer.weight_low is None and layer.weight_lowres is None
    )


def _conv_grid(size: List[int], layer: OctConv2d) -> List[int]:
    k, s, p, d = layer._geom[0], layer._geom[1], layer._geom[2], layer._geom[3]
    return [(size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2)]


def _patches(x: Tensor, layer: OctConv2d) -> Tensor:
    """(N, C*kh*kw, h, w): the conv's input patches on its output grid (unfold's channel order is the weight's)."""
    k, s, p, d = layer._geom[0], layer._geom[1], layer._geom[2], layer._geom[3]
    return F.unfold(x, k, dilation=d, padding=p, stride=s).reshape(x.shape[0], -1, *_conv_grid(list(x.shape[2:]), layer))


def _rows(maps: List[Tensor], bias: bool) -> Tensor:
    """(N*h*w, features): the maps' channels side by side per output pixel, then a column of ones for the bias."""
    cols = [m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]).double() for m in maps]
    if bias:
        cols.append(torch.ones(cols[0].shape[0], 1, dtype=torch.float64, device=cols[0].device))
    return torch.cat(cols, 1)


class LayerFit:
    """The least-squares fit of one octave conv: :meth:`add` pairs of (its input, the original
    conv's output), then :meth:`solve` writes the weights that reproduce them best."""

    def __init__(self, layer: OctConv2d, rows: int = 8192, seed: int = 0) -> None:
        if not fits(layer):
            raise ValueError(f"{WHO}: LayerFit: expected a dense, ungrouped, zero-padded OctConv2d with its stride in the convs, found {layer}")
        self.layer, self.rows = layer, rows
        self.gen = torch.Generator().manual_seed(seed)
        self.high = [n for n in ("weight_hh", "weight_lh") if getattr(layer, n) is not None] if layer.oh else []
        self.low = [n for n in ("weight_hl", "weight_ll") if getattr(layer, n) is not None] if layer.ol else []
        self.sums: dict = {}
        self.pixels = 0

    def _split(self, x: Any) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        if isinstance(x, tuple):
            return x[0], x[1]
        return (x, None) if self.layer.il == 0 else (None, x)

    def add(self, x: Any, target: Tensor) -> bool:
        """Add one batch: the layer's input ``x`` and the original conv's output ``target``
        (N, C, H, W). False (and nothing added) when the grids do not line up."""
        layer = self.layer
        xh, xl = self._split(x)
        high_in = list(xh.shape[2:]) if xh is not None else [v * layer.octave for v in xl.shape[2:]]  # type: ignore[union-attr]
        hw = layer._out_size(high_in)
        low = low_shape(hw, layer.octave, 2)
        if list(target.shape[2:]) != hw or target.shape[1] != layer.out_channels:
            return False
        parts = {
            "weight_hh": lambda: _patches(xh, layer),
            "weight_lh": lambda: upsample_to(_patches(xl, layer), hw),
            "weight_hl": lambda: _patches(downsample(xh, layer.octave, 2), layer),
            "weight_ll": lambda: _patches(xl, layer),
        }
        outs = []
        if self.high:
            outs.append(("high", [parts[n]() for n in self.high], target[:, list(layer.out_partition.high)], layer.bias_h is not None))
        if self.low:
            want = downsample(target[:, list(layer.out_partition.low)], layer.octave, 2)
            outs.append(("low", [parts[n]() for n in self.low], want, layer.bias_l is not None))
        if any(list(m.shape[2:]) != list(t.shape[2:]) for _, maps, t, _ in outs for m in maps) or (self.low and list(outs[-1][2].shape[2:]) != low):
            return False
        for side, maps, want, bias in outs:
            a = _rows(maps, bias)
            b = want.permute(0, 2, 3, 1).reshape(-1, want.shape[1]).double()
            if a.shape[0] > self.rows:  # a sample of the pixels: the normal equations do not need them all
                pick = torch.randperm(a.shape[0], generator=self.gen)[: self.rows].to(a.device)
                a, b = a[pick], b[pick]
            ata, atb = self.sums.get(side, (0.0, 0.0))
            self.sums[side] = (ata + a.T @ a, atb + a.T @ b)
        self.pixels += target.shape[0] * hw[0] * hw[1]
        return True

    @torch.no_grad()
    def solve(self, ridge: float = 1e-4) -> None:
        """Write the weights that minimise the squared error over what was added (plus ``ridge``
        x the mean feature energy x the squared distance to the current weights)."""
        layer = self.layer
        for side, names, bias in (("high", self.high, "bias_h"), ("low", self.low, "bias_l")):
            if side not in self.sums:
                continue
            ata, atb = self.sums[side]
            params = [getattr(layer, n) for n in names] + ([getattr(layer, bias)] if getattr(layer, bias) is not None else [])
            current = torch.cat([p.reshape(p.shape[0], -1).double() if p.dim() > 1 else p.double()[:, None] for p in params], 1).T
            lam = ridge * float(ata.diagonal().mean().clamp_min(1e-12))
            eye = torch.eye(ata.shape[0], dtype=torch.float64, device=ata.device)
            solved = torch.linalg.solve(ata + lam * eye, atb + lam * current).T  # (out, features)
            start = 0
            for p in params:
                width = p[0].numel()
                p.copy_(solved[:, start:start + width].reshape(p.shape).to(p.dtype))
                start += width


def _capture(model: nn.Module, module: nn.Module, x: Tensor, output: bool) -> Any:
    """What ``module`` gets (``output=False``) or returns when ``model(x)`` runs, stopping there."""
    seen: List[Any] = []

    def hook(mod: nn.Module, args: Any, out: Any = None) -> None:
        seen.append(out if output else args[0])
        raise _Stop

    handle = module.register_forward_hook(hook) if output else module.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0] if seen else None


def _run_order(model: nn.Module, layers: dict, x: Tensor) -> List[str]:
    order: List[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: order.append(name) if name not in order else None) for name, m in layers.items()]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return order


def reconstruct(
    original: nn.Module, converted: nn.Module, data: Iterable[Any], *, max_batches: Optional[int] = None, rows: int = 8192,
    ridge: float = 1e-4, inplace: bool = False, seed: int = 0,
) -> nn.Module:
    """Fit each dense octave conv of ``converted`` to the original conv it replaced, in the order
    they run, on ``data`` (unlabeled input batches, or (input, label) pairs whose labels are
    ignored); returns the result (a copy unless ``inplace=True``; ``original`` is never changed).
    See the module docstring for the method. ``record_of(result).reconstruction`` says how many
    layers were fitted, on how many samples, and the relative error against the original on the
    data before and after; if it would be higher after, the weights from before are kept.

    >>> import torch, octify
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
    ...                           torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3, padding=1)).eval()
    >>> oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16), min_size=4)
    >>> data = [torch.randn(16, 3, 16, 16) for _ in range(4)]
    >>> fitted = octify.reconstruct(net, oct_net, data)
    >>> r = octify.record_of(fitted).reconstruction
    >>> r["layers"], r["rel_error_after"] < r["rel_error_before"]
    (2, True)
    """
    check_module(original, f"{WHO}: original")
    check_module(converted, f"{WHO}: converted")
    check_int(rows, f"{WHO}: rows", 1)
    check_number(ridge, f"{WHO}: ridge", 0.0)
    if max_batches is not None:
        check_int(max_batches, f"{WHO}: max_batches", 1)
    model = converted if inplace else copy.deepcopy(converted)
    inputs = [x for x, _ in batches_of(data, WHO, max_batches)]
    originals = dict(original.named_modules())
    layers = {
        name: m for name, m in model.named_modules()
        if fits(m) and isinstance(originals.get(name), nn.Conv2d) and not isinstance(originals.get(name), OctConv2d)
    }
    skipped = sorted(name for name, m in model.named_modules() if isinstance(m, OctConv2d) and name not in layers)
    fitted: List[str] = []
    with torch.no_grad(), eval_mode(original), eval_mode(model):
        before = fidelity(original, model, inputs)
        saved = copy.deepcopy(model.state_dict())
        for name in _run_order(model, layers, to_device(inputs[0], model)) if layers else []:
            fit = LayerFit(layers[name], rows, seed)
            took = True
            for x in inputs:
                target = _capture(original, originals[name], to_device(x, original), output=True)
                given = _capture(model, layers[name], to_device(x, model), output=False)
                if target is None or given is None or not fit.add(given, target.to(to_device(x, model).device)):
                    took = False
                    break
            if took:
                fit.solve(ridge)
                fitted.append(name)
            else:
                skipped.append(name)
        after = fidelity(original, model, inputs)
        kept = "reconstructed"
        if not after["rel_error"] <= before["rel_error"]:
            model.load_state_dict(saved)
            kept = "before (reconstruction did not lower the relative error)"
    record = find_record(model)
    if record is not None:
        record.reconstruction = {
            "layers": len(fitted), "fitted": fitted, "skipped": sorted(skipped), "samples": before["samples"],
            "rel_error_before": before["rel_error"], "rel_error_after": after["rel_error"],
            "cosine_before": before["cosine"], "cosine_after": after["cosine"], "kept": kept, "ridge": ridge,
        }
    return model
