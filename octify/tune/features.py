"""Feature distillation: the converted model's merged module outputs pulled towards the original's.

The conversion record says where each module of the original ends in the converted graph
(``record.taps``, from ``fx/taps.py``); :class:`FeatureTaps` reads those values while the
converted model runs (an ``fx.Interpreter`` over its graph, so the model is not changed), merges a
``(high, low)`` pair back to one tensor in the original channel order (the same
:class:`~octify.nn.OctaveMerge` a merge in the graph uses), and reads the original's values with
forward hooks on the same modules. Each pair of values adds :func:`~.losses.scaled_mse` (scale-free,
so that stages of different magnitude weigh alike), averaged over the taps (FitNets, Romero et
al. 2015, without the regressor: the shapes already match).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.fx as fx
from torch import Tensor, nn

from ..errors import OptionError
from ..nn.partition import Partition
from ..nn.split_merge import OctaveMerge
from ..record import record_of
from .losses import scaled_mse

__all__ = ["FeatureTaps", "check_features"]


def check_features(features: Any) -> Optional[Union[str, tuple[str, ...]]]:
    """``None``, ``"auto"`` or module names (a tuple); anything else raises."""
    if features is None or features == "auto":
        return features
    if isinstance(features, str):
        return tuple(f.strip() for f in features.split(",") if f.strip()) or _bad_features(features)
    if isinstance(features, (list, tuple)) and features and all(isinstance(f, str) and f for f in features):
        return tuple(features)
    return _bad_features(features)


def _bad_features(features: Any) -> Any:
    raise OptionError(
        f"features must be None, 'auto' or module names of the original (['layer2', 'layer3']), found {features!r}"
    )


class _Reader(fx.Interpreter):
    """Runs the converted GraphModule node by node, keeping the tapped values as they appear
    (merged or cloned at once: a later in-place op must not change what was read)."""

    def __init__(self, gm: fx.GraphModule, wanted: dict[str, list[tuple[int, str]]], merges: Sequence[Optional[nn.Module]]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.wanted, self.merges = wanted, merges
        self.parts: dict[int, dict[str, Tensor]] = {}
        self.found: dict[int, Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        for index, role in self.wanted.get(n.name, ()):
            merge = self.merges[index]
            if merge is None:
                self.found[index] = out.clone()
                continue
            parts = self.parts.setdefault(index, {})
            parts[role] = out
            if len(parts) == 2:
                self.found[index] = merge((parts["high"], parts["low"]))
        return out


class _Tapped(nn.Module):
    """The converted model returning ``(its output, [tapped values])``; its parameters are the model's."""

    def __init__(self, model: fx.GraphModule, taps: list[dict], octave: int) -> None:
        super().__init__()
        self.model = model
        self.merges = nn.ModuleList(
            [OctaveMerge(partition=_partition(t), octave=octave) if t["low"] is not None else nn.Identity() for t in taps]
        )
        self._plain = [t["low"] is None for t in taps]
        self.wanted: dict[str, list[tuple[int, str]]] = {}
        for i, t in enumerate(taps):
            self.wanted.setdefault(t["high"], []).append((i, "high"))
            if t["low"] is not None:
                self.wanted.setdefault(t["low"], []).append((i, "low"))

    def forward(self, *args: Any) -> tuple[Any, list[Tensor]]:
        merges = [None if plain else m for plain, m in zip(self._plain, self.merges)]
        reader = _Reader(self.model, self.wanted, merges)
        out = reader.run(*args)
        return out, [reader.found[i] for i in range(len(merges))]


def _partition(tap: dict) -> Partition:
    low = tuple(tap["low_channels"])
    return Partition(tuple(c for c in range(tap["channels"]) if c not in set(low)), low)


class FeatureTaps:
    """The chosen module outputs of both models: ``student`` runs the converted model with its
    taps, ``teacher_values`` returns the original's values seen since the last call, ``loss``
    compares them. ``close()`` removes the hooks from the original."""

    def __init__(self, original: nn.Module, converted: nn.Module, features: Union[str, Sequence[str]], who: str) -> None:
        try:
            record = record_of(converted)
        except ValueError:
            record = None
        if record is None or not record.taps or not isinstance(converted, fx.GraphModule):
            raise OptionError(
                f"{who}: features= needs a model from octify.convert, whose record says where the original's modules end; "
                f"found a {type(converted).__name__} without one. Hint: pass features=None, or convert with this octify version."
            )
        taps = record.taps
        names = [n for n, t in taps.items() if t["stage"]] if features == "auto" else list(features)
        if not names:
            raise OptionError(f"{who}: features='auto' found no stage with octave layers to distil. Hint: pass module names.")
        unknown = [n for n in names if n not in taps]
        if unknown:
            known = ", ".join(list(taps)[:12]) + (", ..." if len(taps) > 12 else "")
            raise OptionError(f"{who}: features: no module output named {', '.join(unknown)} in the converted model (known: {known}). "
                             "Hint: name modules of the original that return one tensor; features='auto' picks the stage ends.")
        nodes = {n.name for n in converted.graph.nodes}
        stale = [n for n in names if taps[n]["high"] not in nodes or (taps[n]["low"] is not None and taps[n]["low"] not in nodes)]
        if stale:
            raise OptionError(f"{who}: features: the converted graph has changed since conversion ({', '.join(stale)} no longer found). "
                             "Hint: distil features on the model octify.convert returned, before freeze or other graph passes.")
        self.names = names
        self.student = _Tapped(converted, [taps[n] for n in names], record.octave)
        self._seen: dict[str, Tensor] = {}
        modules = dict(original.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise OptionError(f"{who}: features: the original has no module {', '.join(missing)}. Hint: pass the original the model was converted from.")
        self._hooks = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            self._seen[name] = out
        return hook

    def teacher_values(self) -> list[Tensor]:
        values = []
        for n in self.names:
            v = self._seen.get(n)
            if not isinstance(v, Tensor):
                found = "nothing (it did not run)" if v is None else type(v).__name__
                raise OptionError(f"octify.finetune: features: the original's module {n} returned {found}, not one tensor. "
                                 "Hint: name modules that return one tensor.")
            values.append(v)
        self._seen.clear()
        return values

    def loss(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        terms = []
        for name, s, t in zip(self.names, student, teacher):
            if s.shape != t.shape:
                raise OptionError(f"octify.finetune: features: {name} is {tuple(s.shape)} in the converted model and {tuple(t.shape)} in the "
                                 "original. Hint: the module's output is not its last value; name another module.")
            terms.append(scaled_mse(s, t))
        return torch.stack(terms).mean()

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
