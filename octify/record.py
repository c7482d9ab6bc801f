"""The conversion record: what convert() did to each conv, and every merge or split it inserted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional

import torch

__all__ = ["ConvRecord", "MergeRecord", "Specialization", "ConversionRecord", "record_of", "recorded_inputs", "attach_record", "model_name", "find_record"]


@dataclass(frozen=True)
class ConvRecord:
    """One conv (Conv2d, Conv1d or Conv3d) of the original model."""

    name: str  # qualified module name, kept by the OctConv2d that replaces it
    alpha_in: float
    alpha_out: float
    in_shape: tuple[int, ...]  # the original plain input and output shapes at example_inputs
    out_shape: tuple[int, ...]
    plain_reason: Optional[str] = None  # why it was left a plain nn.Conv2d (None: converted)

    @property
    def converted(self) -> bool:
        return self.plain_reason is None


@dataclass(frozen=True)
class MergeRecord:
    """A pair turned back into a plain tensor (merge), a plain tensor split into a pair (split),
    or two partitions aligned (align), in front of ``node``."""

    kind: str  # "merge" | "split" | "align"
    node: str  # the fx node (original graph) that needed it
    target: str  # the op of that node, as text
    reason: str


@dataclass(frozen=True)
class Specialization:
    """A decision the traced model took on the example inputs' shapes (a branch, a number)."""

    where: str  # file:line of the user's code
    code: str  # that line
    value: object  # what it evaluated to: the branch taken (bool) or the number (int)


@dataclass
class ConversionRecord:
    """Everything convert() decided; ``record_of(model)`` returns it."""

    alpha: float
    octave: int
    stride_mode: str
    convs: list[ConvRecord] = field(default_factory=list)
    merges: list[MergeRecord] = field(default_factory=list)
    threaded: dict[str, int] = field(default_factory=dict)  # op kind -> nodes run per branch
    fused: list[tuple[str, str]] = field(default_factory=list)  # (conv, batch norm) folded by octify.freeze
    # Control flow resolved on the example inputs' shapes; the converted model checks each one
    # at run time and refuses an input that would take another branch.
    specialized: list[Specialization] = field(default_factory=list)
    # The shapes of the positional tensor inputs the model was converted on (what ``octify export`` reruns).
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    # With calibration data: the convs whose low channels were chosen by measurement
    # ("assigned"), those that kept the default split and why, the batch norms re-estimated.
    calibration: dict = field(default_factory=dict)
    # After octify.finetune: every held-out measurement and the step whose weights were kept.
    finetune: dict = field(default_factory=dict)
    # After octify.reconstruct: the layers fitted, the data, and the fidelity before and after.
    reconstruction: dict = field(default_factory=dict)
    # Where each module of the original ends in the converted graph (fx/taps.py): what
    # octify.finetune(features=...) reads. Node names of this graph, stale once it is rewritten.
    taps: dict = field(default_factory=dict)
    # With policy="latency": each unit's measured times and fidelity costs, the plan chosen, the
    # trade-off curve, and the chosen model timed against the plain one (fx/measured.py).
    latency_plan: dict = field(default_factory=dict)
    # The converted model's class name (``OctResNet``): a copy of a GraphModule is called
    # "GraphModule" again, so reports and messages take the name from here (``model_name``).
    class_name: str = ""
    # True when the original still had the random weights its constructor drew (octify's command
    # line tells, for a model built from its code without --weights); False when trained or unknown.
    random_weights: bool = False
    # What replaying the conversion needs (``octify.load`` rebuilds a saved model from them, with
    # no data and no timing): each conv node's final ``ConvPlan`` (node name of the traced
    # original -> its fields), and the options that shaped the trace (``options``: memory_format,
    # leaf globs and types, the keys of user rules, the example inputs' shapes and dtypes).
    plan: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    # After octify.freeze: its settings (fold_bn, memory_format, conv3d, and matmul_1x1 as the
    # names of the layers that run as matrix products), what a reload replays.
    frozen: dict = field(default_factory=dict)

    def __setstate__(self, state: dict) -> None:
        # Records pickled by 0.1.0 have no ``specialized``, ``input_shapes``, ``calibration`` or ``finetune``.
        self.__dict__.update({"specialized": [], "input_shapes": [], "calibration": {}, "finetune": {}, "reconstruction": {}, "taps": {}, "latency_plan": {}, "class_name": "", "random_weights": False,
                              "plan": {}, "options": {}, "frozen": {}, **state})

    @property
    def converted(self) -> list[ConvRecord]:
        return [c for c in self.convs if c.converted]

    @property
    def plain(self) -> list[ConvRecord]:
        return [c for c in self.convs if not c.converted]

    def nothing_converted(self) -> Optional[str]:
        """"none of the N convs was converted; why" when the model has convs and none was
        converted (the one wording of the library's warning and the command line's headline);
        None otherwise."""
        if not self.convs or self.converted:
            return None
        reasons = list(dict.fromkeys(str(c.plain_reason) for c in self.convs))
        if self.alpha == 0:
            why = "alpha is 0, so every channel stays in the high-frequency branch"
        elif self.alpha == 1:
            why = "alpha 1 leaves no high-frequency channel, and an octave conv needs both branches"
        elif len(self.convs) == 1:
            why = f"the model's only conv, {self.convs[0].name}, stays plain: {reasons[0]}"
        elif len(reasons) == 1:
            why = f"every conv stays plain: {reasons[0]}"
        else:
            why = "no conv qualifies: " + "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
        return f"none of the {len(self.convs)} convs was converted; {why}"

    def count(self, kind: str = "merge") -> int:
        return sum(1 for m in self.merges if m.kind == kind)

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "octave": self.octave,
            "stride_mode": self.stride_mode,
            "convs": [asdict(c) for c in self.convs],
            "merges": [asdict(m) for m in self.merges],
            "threaded": dict(self.threaded),
            "fused": [list(p) for p in self.fused],
            "specialized": [asdict(sp) for sp in self.specialized],
            "input_shapes": [list(s) for s in self.input_shapes],
            "calibration": dict(self.calibration),
            "finetune": dict(self.finetune),
            "reconstruction": dict(self.reconstruction),
            "taps": {k: dict(v) for k, v in self.taps.items()},
            "latency_plan": dict(self.latency_plan),
            "class_name": self.class_name,
            "random_weights": self.random_weights,
            "plan": {k: dict(v) for k, v in self.plan.items()},
            "options": dict(self.options),
            "frozen": dict(self.frozen),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ConversionRecord":
        """The record whose :meth:`to_dict` is ``d`` (read back from JSON: tuples restored).

        >>> import json, torch, octify
        >>> conv = lambda c_in: torch.nn.Conv2d(c_in, 8, 3, padding=1)
        >>> net = torch.nn.Sequential(conv(3), conv(8), conv(8))
        >>> rec = octify.record_of(octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16)))
        >>> back = ConversionRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
        >>> back == rec, back.convs[0].in_shape
        (True, (1, 3, 16, 16))
        """
        d = dict(d)
        convs = [ConvRecord(**{**c, "in_shape": tuple(c["in_shape"]), "out_shape": tuple(c["out_shape"])}) for c in d.pop("convs", [])]
        merges = [MergeRecord(**m) for m in d.pop("merges", [])]
        specialized = [Specialization(**sp) for sp in d.pop("specialized", [])]
        fused = [tuple(p) for p in d.pop("fused", [])]
        shapes = [tuple(s) for s in d.pop("input_shapes", [])]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ConversionRecord.from_dict: unknown fields {', '.join(unknown)}; expected fields of {', '.join(sorted(known))}")
        return cls(convs=convs, merges=merges, specialized=specialized, fused=fused, input_shapes=shapes, **d)


def attach_record(model: torch.nn.Module, record: ConversionRecord) -> None:
    """Keep ``record`` with a converted GraphModule, where ``record_of`` finds it after a copy or a reload.

    torch.save/torch.load of a GraphModule drops its meta but keeps plain attributes, and
    copy.deepcopy keeps meta but re-creates attributes only from "_user_preserved_attributes":
    the record goes in all three places so that record_of works after either."""
    model.meta["octify"] = record
    model._octify_record = record
    model.meta.setdefault("_user_preserved_attributes", {})["_octify_record"] = record


def model_name(model: torch.nn.Module) -> str:
    """What to call ``model``: a converted model's class name as convert gave it (``OctResNet``),
    which copies and reloads keep; else its type's name.

    >>> import torch, copy, octify
    >>> conv = lambda c_in: torch.nn.Conv2d(c_in, 8, 3, padding=1)
    >>> net = octify.convert(torch.nn.Sequential(conv(3), conv(8), conv(8)), example_inputs=torch.randn(1, 3, 16, 16))
    >>> type(net).__name__, type(copy.deepcopy(net)).__name__, model_name(copy.deepcopy(net))
    ('OctSequential', 'GraphModule', 'OctSequential')
    """
    record = find_record(model)
    return (record.class_name if record is not None else "") or type(model).__name__


def find_record(model: torch.nn.Module) -> Optional[ConversionRecord]:
    """The conversion record of ``model``, or None for a model octify did not convert."""
    try:
        return record_of(model)
    except ValueError:
        return None


def record_of(model: torch.nn.Module) -> ConversionRecord:
    """The ConversionRecord of a model returned by ``octify.convert``.

    >>> import torch, octify
    >>> conv = lambda: torch.nn.Conv2d(8, 8, 3, padding=1)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), conv(), conv())
    >>> rec = octify.record_of(octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32)))
    >>> [(c.name, c.alpha_in, c.alpha_out) for c in rec.convs]   # stem plain; the last layer ends the octave
    [('0', 0.0, 0.0), ('1', 0.0, 0.5), ('2', 0.5, 0.0)]
    """
    meta = getattr(model, "meta", None)
    rec = meta.get("octify") if isinstance(meta, dict) else None
    if rec is None:  # a GraphModule back from torch.load has lost its meta (see convert())
        rec = getattr(model, "_octify_record", None)
    if not isinstance(rec, ConversionRecord):
        raise ValueError(
            f"expected a model returned by octify.convert, found a {type(model).__name__} with no conversion record. "
            "Hint: call octify.convert(model) first."
        )
    return rec


def recorded_inputs(model: torch.nn.Module, seed: int = 0) -> Optional[tuple[torch.Tensor, ...]]:
    """Random inputs (seeded) of the shapes ``octify.convert`` traced ``model`` with; None when the
    model has no record or its record no shapes (files saved by octify 0.1.0).

    >>> import torch, octify
    >>> conv = lambda: torch.nn.Conv2d(8, 8, 3, padding=1)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), conv(), conv())
    >>> net = octify.convert(net, example_inputs=torch.randn(2, 3, 16, 16))
    >>> [tuple(t.shape) for t in recorded_inputs(net)], recorded_inputs(torch.nn.Conv2d(3, 8, 3))
    ([(2, 3, 16, 16)], None)
    """
    try:
        shapes = record_of(model).input_shapes
    except ValueError:
        return None
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(s, generator=gen) for s in shapes) if shapes else None
