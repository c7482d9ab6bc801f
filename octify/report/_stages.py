"""Stages: a model's layers grouped by the submodule they live in, for the summary report.

A stage is a top-level child of the model (``layer1`` of a ResNet). Where one child holds most
of the work (``features`` of a VGG or a MobileNet), it is opened up into its children, and so on
until no group holds more than half of the MACs. Runs of groups without MACs (a ResNet's
``bn1``, ``relu``, ``maxpool``) join the group before them, so that each stage has some work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from ..utils.conventions import is_inserted

__all__ = ["Stage", "stages", "common_prefix"]

_MAX_OPENINGS = 6  # how many times a dominant group may be opened up


@dataclass
class Stage:
    """A label and the layer names it groups, in model order."""

    label: str
    names: List[str] = field(default_factory=list)


def _key(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth]) if name else "(model)"


def stages(rows: Sequence[Tuple[str, int]]) -> List[Stage]:
    """Group ``(layer name, MACs)`` rows into stages (see the module docstring).

    >>> [s.label for s in stages([("conv1", 40), ("bn1", 0), ("layer1.0.conv", 20), ("layer1.1.conv", 20), ("fc", 1)])]
    ['conv1..bn1', 'layer1', 'fc']
    >>> [s.label for s in stages([("features.0", 30), ("features.1", 0), ("features.2", 60), ("classifier", 10)])]
    ['features.0..features.1', 'features.2', 'classifier']
    >>> [s.names for s in stages([("layer1.conv", 5), ("octify_merge_0", 0), ("fc", 1)])]
    [['layer1.conv', 'octify_merge_0'], ['fc']]
    """
    inserted = [is_inserted(name) for name, _ in rows]
    if all(inserted):
        inserted = [False] * len(rows)
    follows: Dict[str, List[str]] = {}  # a module octify inserted joins the stage of the layer before it
    anchor = None
    for (name, _), added in zip(rows, inserted):
        if added:
            follows.setdefault(anchor, []).append(name)  # type: ignore[arg-type]
        else:
            anchor = name
    leading = follows.pop(None, [])  # type: ignore[call-overload]
    rows = [r for r, added in zip(rows, inserted) if not added]
    total = sum(macs for _, macs in rows) or 1
    # groups: [key, depth, [(name, macs)]] in model order
    groups: List[list] = []
    for name, macs in rows:
        key = _key(name, 1)
        if groups and groups[-1][0] == key:
            groups[-1][2].append((name, macs))
        else:
            groups.append([key, 1, [(name, macs)]])
    for _ in range(_MAX_OPENINGS):
        i, big = max(enumerate(groups), key=lambda g: sum(m for _, m in g[1][2]))
        key, depth, members = big
        if sum(m for _, m in members) <= total / 2 or all(len(n.split(".")) <= depth for n, _ in members):
            break
        children: List[list] = []
        for name, macs in members:
            child = _key(name, depth + 1)
            if children and children[-1][0] == child:
                children[-1][2].append((name, macs))
            else:
                children.append([child, depth + 1, [(name, macs)]])
        if len(children) == 1:
            groups[i] = children[0]
            continue
        groups[i : i + 1] = children
    merged: List[Stage] = []
    first_keys: List[str] = []
    last_keys: List[str] = []
    pending: List[str] = []  # names of leading groups without MACs, waiting for the first group with some
    pending_key = ""
    for key, _, members in groups:
        names = [n for n, _ in members]
        has_work = any(m for _, m in members)
        if not merged:
            if not has_work:
                pending += names
                pending_key = pending_key or key
                continue
            merged.append(Stage(key, pending + names))
            first_keys.append(pending_key or key)
            last_keys.append(key)
            pending, pending_key = [], ""
        elif has_work:
            merged.append(Stage(key, names))
            first_keys.append(key)
            last_keys.append(key)
        else:
            merged[-1].names += names
            last_keys[-1] = key
    if pending:  # no group had any MACs
        merged.append(Stage(pending_key, pending))
        first_keys.append(pending_key)
        last_keys.append(groups[-1][0])
    for stage, first, last in zip(merged, first_keys, last_keys):
        stage.label = first if first == last else f"{first}..{last}"
        stage.names = [m for n in stage.names for m in [n, *follows.get(n, [])]]
    if merged:
        merged[0].names[:0] = leading
    return merged


def common_prefix(names: Sequence[str]) -> str:
    """The dotted prefix every name shares ('' when none), e.g. 'model.backbone.'.

    >>> common_prefix(["model.backbone.conv1", "model.backbone.layer1.0.conv1", "model.head"])
    'model.'
    """
    parts = [n.split(".") for n in names if n]
    if len(parts) < 2:
        return ""
    prefix: List[str] = []
    for column in zip(*(p[:-1] for p in parts)):  # never the whole name
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return ".".join(prefix) + "." if prefix else ""
