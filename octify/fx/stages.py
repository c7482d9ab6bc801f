"""The conversion pass as a list: :data:`STAGES`, each a function of the pass's :class:`PassState`.

``octify.convert`` runs them in order (:func:`run_stages`); calibration runs the first three once
and the rest once per candidate split, ``octify.load`` replays them with the plan a saved file
recorded in place of stage 3, and tests run any prefix of them to look at what a stage left.

>>> import torch, octify
>>> from octify.fx.stages import STAGES, PassState, run_stages
>>> [s.name for s in STAGES]
['trace', 'shape_prop', 'plan', 'rewrite', 'inplace', 'layout', 'verify']
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1))
>>> state = run_stages(PassState(net, (torch.randn(1, 3, 16, 16),), {}, octify.ConvertOptions()), last="plan")
>>> sorted((str(node.target), p.alpha_out) for node, p in state.plans.items())
[('0', 0.0), ('1', 0.0)]
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
import torch.fx as fx
from torch import nn

from ..options import ConvertOptions
from ..record import ConversionRecord, attach_record
from ..replay import plan_dict
from ..rules import registry
from ..utils.warn import warn_user
from .context import ConversionContext
from .globs import warn_unmatched_globs
from .graph_builder import GraphBuilder
from .inplace import inplace_adds
from .layout import contiguous_before_layout_reads, to_channels_last
from .narrow import narrow_outputs
from .plain_regions import keep_plain_regions
from .plan import plan
from .recorder import Recorder
from .rewrite import rewrite
from .shape_prop import eval_mode, fake_mode, propagate
from .taps import module_taps
from .tracer import SPECIALIZED, is_user_leaf, placeholder_values, trace
from .verify import verify

__all__ = ["PassState", "Stage", "STAGES", "run_stages", "stage_names"]


@dataclass
class PassState:
    """What the stages read and write: the inputs of one conversion, then each stage's result."""

    model: nn.Module
    args: tuple
    kwargs: dict
    opts: ConvertOptions
    inplace: bool = False  # stage 4 rewrites ``model``'s own modules instead of a copy's
    replay: dict = field(default_factory=dict)  # what the record keeps for octify.load (replay.py)
    # 1-2: the traced graph with every node's fake value, the fake mode, the rules in force
    gm: Optional[fx.GraphModule] = None
    fm: Any = None
    rules: Mapping = field(default_factory=dict)
    # 3: each conv's plan
    plans: Optional[Mapping] = None
    # 4-7: the new graph and the module it runs on
    record: Optional[ConversionRecord] = None
    builder: Optional[GraphBuilder] = None
    root: Optional[nn.Module] = None
    graph: Optional[fx.Graph] = None
    out: Optional[fx.GraphModule] = None
    fake_inputs: Any = None

    def with_plans(self, plans: Mapping, model: Optional[nn.Module] = None, inplace: Optional[bool] = None) -> "PassState":
        """A state that runs stages 4-7 for another plan (and model) over the same trace."""
        return dataclasses.replace(
            self, plans=plans, model=self.model if model is None else model, inplace=self.inplace if inplace is None else inplace,
            record=None, builder=None, root=None, graph=None, out=None, fake_inputs=None,
        )


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # the file of octify/fx that does the work
    run: Callable[[PassState], None]


def _trace(s: PassState) -> None:
    s.rules = registry(s.opts.rules)
    # Module types that have a rule are traced as leaves, so their rule sees them whole.
    rule_types = tuple(k for k in s.rules if isinstance(k, type) and not k.__module__.startswith("torch.nn"))
    rule_classes = tuple(k for k in s.rules if isinstance(k, str) and "." in k)
    s.fm = fake_mode()
    s.gm = trace(s.model, s.opts.leaf_types + rule_types, s.opts.leaf_globs, s.fm, s.args, s.kwargs, rule_classes)


def _shape_prop(s: PassState) -> None:
    propagate(s.gm, s.fm)  # what the trace could not evaluate, with the node that fails


def _plan(s: PassState) -> None:
    o = s.opts
    s.plans = plan(
        s.gm, alpha=o.alpha, octave=o.octave, stride_mode=o.stride_mode, min_size=o.min_size, exclude=o.exclude,
        alpha_for=o.alpha_for, policy=o.policy,
    )
    keep_plain_regions(s.gm, s.plans)
    warn_unmatched_globs([str(n.target) for n in s.plans], dict(s.model.named_modules()), o.exclude, o.alpha_for)


def _rewrite(s: PassState) -> None:
    o = s.opts
    s.fake_inputs = placeholder_values(s.gm)
    s.record = record = ConversionRecord(
        alpha=o.alpha, octave=o.octave, stride_mode=o.stride_mode, specialized=s.gm.meta.get(SPECIALIZED, []),
        input_shapes=[tuple(a.shape) for a in s.args if isinstance(a, torch.Tensor)], plan=plan_dict(s.plans),
        options=dict(s.replay),
    )
    modules = dict(s.gm.named_modules())
    recorder = Recorder(record, modules)
    training = {name: m.training for name, m in s.model.named_modules()}
    s.root = s.model if s.inplace else copy.deepcopy(s.model)
    s.builder = GraphBuilder(s.root, s.fm, training)
    ctx = ConversionContext(s.builder, recorder, modules, s.plans, octave=o.octave, transfer_weights=o.transfer_weights)
    with eval_mode(s.root):
        values: dict = {}
        s.graph = rewrite(s.gm, ctx, s.rules, values)
    record.taps = module_taps(s.gm, values)
    recorder.unconverted_convs(s.model, s.gm, lambda m, name: is_user_leaf(m, name, o.leaf_types, o.leaf_globs))
    why = record.nothing_converted()
    if why is not None:
        warn_user(f"octify: {why}; the result computes what the original does, with no saving")
    record.class_name = f"Oct{type(s.model).__name__}"
    s.out = fx.GraphModule(s.root, s.graph, class_name=record.class_name)
    s.builder.restore_training_flags(s.out)
    s.out.training = s.model.training


def _inplace(s: PassState) -> None:
    inplace_adds(s.out)
    narrow_outputs(s.out)  # what TorchScript needs: one-branch octave outputs typed as Tensors


def _layout(s: PassState) -> None:
    contiguous_before_layout_reads(s.out, s.record)  # view-style code stays valid in either layout
    if s.opts.memory_format == "channels_last":
        to_channels_last(s.out)
    attach_record(s.out, s.record)


def _verify(s: PassState) -> None:
    if s.opts.verify:
        verify(s.gm, s.out, s.fm, s.fake_inputs)


STAGES = (
    Stage("trace", "tracer", _trace),
    Stage("shape_prop", "shape_prop", _shape_prop),
    Stage("plan", "plan", _plan),
    Stage("rewrite", "rewrite", _rewrite),
    Stage("inplace", "inplace", _inplace),
    Stage("layout", "layout", _layout),
    Stage("verify", "verify", _verify),
)


def stage_names() -> list:
    return [s.name for s in STAGES]


def run_stages(state: PassState, first: Optional[str] = None, last: Optional[str] = None) -> PassState:
    """Run the stages from ``first`` to ``last`` (both included; default: all) on ``state``, and return it."""
    names = stage_names()
    for given in (first, last):
        if given is not None and given not in names:
            raise ValueError(f"a stage of the pass must be one of {', '.join(map(repr, names))}, found {given!r}")
    start = names.index(first) if first else 0
    stop = names.index(last) + 1 if last else len(names)
    for stage in STAGES[start:stop]:
        stage.run(state)
    return state
