"""convert(): the pass that turns a CNN into an octave network, stage by stage.

The stages live in :mod:`octify.fx`, one file each, and run in this order:

1. ``tracer``: torch.fx graph of the model (octify's layers, leaf modules and rule-keyed
   module types kept whole);
2. ``shape_prop``: every node's shape on fake tensors of ``example_inputs``;
3. ``plan``: each conv's output alpha and the reason (``latency`` adds the latency policy;
   ``plain_regions`` keeps plain the channel layouts that meet an op with no per-branch form);
4. ``rewrite``: the graph re-emitted with (high, low) pairs, the rules of ``builtin_rules``
   (and the user's) deciding per op, weights carried into the new layers;
5. ``inplace``: residual sums written in place, as the original's ``+=`` was;
6. ``layout``: the memory format (channels-last weights), and the ops that read memory layout
   (``x.view(n, -1)``) given contiguous inputs;
7. ``verify``: the converted model on fake inputs gives outputs of the original's structure.

The result is a plain model: no cache, the same code in training and in eval. ``octify.freeze``
(``fx/freeze.py``) makes the inference form, with batch norms folded, on request.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.fx as fx
from torch import nn

from .fx.context import ConversionContext
from .fx.graph_builder import GraphBuilder
from .fx.inplace import inplace_adds
from .fx.layout import contiguous_before_layout_reads, to_channels_last
from .fx.narrow import narrow_outputs
from .options import ConvertOptions
from .fx.globs import warn_unmatched_globs
from .fx.plain_regions import keep_plain_regions
from .fx.plan import AlphaFor, plan
from .fx.recorder import Recorder
from .fx.rewrite import rewrite
from .fx.taps import module_taps
from .fx.measure import Progress
from .fx.measured import measured_plan
from .fx.shape_prop import eval_mode, fake_mode, propagate, quiet_probes
from .fx.tracer import SPECIALIZED, LeafSpec, is_user_leaf, placeholder_values, trace
from .fx.verify import verify as verify_outputs
from .record import ConversionRecord, attach_record
from .replay import plan_dict, recorded_plans, replay_inputs, replay_options
from .rules import Rule, RuleKey, registry
from .tune.calibrate import calibrate, check_reiterable
from .tune.reconstruct import reconstruct as fit_layers
from .utils.inputs import default_inputs, split_example_inputs
from .utils.validate import check_module

__all__ = ["convert", "rebuild"]


def convert(
    model: nn.Module,
    alpha: float = ConvertOptions.alpha,
    *,
    example_inputs: Any = None,
    octave: int = ConvertOptions.octave,
    stride_mode: str = ConvertOptions.stride_mode,
    min_size: int = ConvertOptions.min_size,
    exclude: Union[str, Sequence[str]] = ConvertOptions.exclude,
    alpha_for: AlphaFor = ConvertOptions.alpha_for,
    leaf_modules: Sequence[LeafSpec] = ConvertOptions.leaf_modules,
    rules: Optional[Mapping[RuleKey, Optional[Rule]]] = ConvertOptions.rules,
    transfer_weights: bool = ConvertOptions.transfer_weights,
    verify: bool = ConvertOptions.verify,
    inplace: bool = ConvertOptions.inplace,
    policy: str = ConvertOptions.policy,
    memory_format: str = ConvertOptions.memory_format,
    calibration: Optional[Iterable[Any]] = None,
    calibration_split: str = ConvertOptions.calibration_split,
    reconstruct: Optional[Iterable[Any]] = None,
    latency_budget: Optional[float] = ConvertOptions.latency_budget,
    fidelity_budget: Optional[float] = ConvertOptions.fidelity_budget,
    latency_cache: Any = ConvertOptions.latency_cache,
    progress: Optional[Progress] = None,
) -> fx.GraphModule:
    """Turn ``model``'s Conv2d layers into OctConv2d layers, threading (high, low) pairs between them
    (Conv1d -> OctConv1d; Conv3d -> OctConv3d, the octave on H and W, time at full resolution).

    Returns a ``torch.fx.GraphModule`` in the model's train/eval mode whose OctConv2d and
    OctBatchNorm2d modules keep the qualified names of the layers they replace; its
    ``octify.record_of(...)`` tells what was done to each conv and every merge inserted.
    ``model`` is left untouched unless ``inplace=True`` (which reuses its modules instead of
    copying them; the model itself must not be used afterwards).

    ``example_inputs`` is a Tensor, a tuple of positional inputs or a dict of keyword inputs;
    by default one 1 x C x 224 x 224 input, C the input channels of the first Conv2d. Python
    control flow on their shapes is resolved on them (``record_of(...).specialized``) and
    checked at run time; parameters of ``forward`` they do not give keep their defaults.
    ``policy="latency"`` measures on this machine, at the example inputs' shapes and the current
    thread count, each block's time plain and at alphas 0.25 / 0.5 / 0.75 (the frozen forms), and
    chooses per block by dynamic programming: the fastest plan, or the one with the least fidelity
    cost within ``latency_budget`` (a fraction of the plain time), or the fastest within
    ``fidelity_budget``; the chosen model is timed against the plain one and stays plain if it is
    not faster (``fx/measured.py``; timings cached in ``latency_cache``: True for the user cache
    directory, a directory, or False). ``record_of(...).latency_plan`` has the times, the choice
    and the trade-off curve; ``progress(text, done, total)``, if given, is called as the
    measurement advances (the command line draws it as a bar). ``policy="latency-rules"`` applies fixed rules instead, no timing: plain
    where octave layers rarely pay on a CPU (small maps, depthwise and thin convs).
    ``memory_format="channels_last"`` (the default) lays the converted model's 4-D weights out
    channels-last, the layout in which its many small convolutions run fast; inputs in either
    layout are accepted. ``"preserve"`` keeps the original layout.
    The result computes from its parameters on every call, in training and in eval alike (no
    cache: writes through ``.data``, optimizer steps and ``load_state_dict`` are all seen), and
    exports, traces and scripts as any module does. ``octify.freeze(model.eval())`` gives its
    inference form (batch norms folded, weights laid out once), the one to deploy.
    ``calibration`` (batches of inputs, or (input, label) pairs, that can be iterated twice: a
    list or a DataLoader) starts the converted model closer to the original: the batch norms'
    running statistics are corrected for the drift the conversion causes on that data (exact at
    ``octave=1``), and each conv may send low the output channels that lose least one octave down
    on it (convs whose outputs are summed share one choice). That measured split is a heuristic,
    so with ``calibration_split="best"`` (the default) both it and the default split are
    converted and the one that reproduces the original's outputs better on the calibration data
    is returned: calibration never leaves a model worse on the data it was given than the default
    split with corrected batch norms. ``"measured"`` or ``"default"`` takes one without comparing
    (``tune/calibrate.py``). ``record_of(...).calibration`` says which split was taken, both
    relative errors, and what was corrected. ``reconstruct`` (batches of unlabeled inputs) then
    fits each octave conv to the original conv it replaced on that data (:func:`octify.reconstruct`).

    >>> import torch, torchvision, octify
    >>> net = torchvision.models.resnet18().eval()
    >>> oct_net = octify.convert(net, alpha=0.5, octave=1)   # octave=1: same outputs as net
    >>> x = torch.randn(1, 3, 64, 64)
    >>> bool((oct_net(x) - net(x)).abs().max() < 1e-3)
    True
    >>> octify.record_of(oct_net).count("merge")
    0
    """
    check_module(model, "octify.convert: model")
    options = ConvertOptions(
        alpha=alpha, octave=octave, stride_mode=stride_mode, min_size=min_size, exclude=exclude, alpha_for=alpha_for,
        leaf_modules=leaf_modules, rules=rules, transfer_weights=transfer_weights, verify=verify, inplace=inplace,
        policy=policy, memory_format=memory_format, calibration_split=calibration_split,
        latency_budget=latency_budget, fidelity_budget=fidelity_budget, latency_cache=latency_cache,
    )
    if example_inputs is None:
        args, kwargs = default_inputs(model), {}
    else:
        args, kwargs = split_example_inputs(example_inputs, "octify.convert")
    if calibration is not None:
        check_reiterable(calibration, "octify.convert: calibration")
    if reconstruct is not None and inplace:
        raise ValueError("octify.convert: reconstruct fits the converted model to the original, which inplace=True consumes. Hint: inplace=False.")
    with quiet_probes():
        if options.policy == "latency":
            converted = measured_plan(
                model, args, options, lambda opts, data: _run(model, args, kwargs, opts, data), calibration,
                options.latency_budget, options.fidelity_budget, options.latency_cache, progress,
            )
        else:
            converted = _run(model, args, kwargs, options, calibration)
    if reconstruct is None:
        return converted
    return fit_layers(model, converted, reconstruct, inplace=True)


def _run(model: nn.Module, args: tuple, kwargs: dict, opts: ConvertOptions, calibration: Any = None) -> fx.GraphModule:
    gm, fm, rules_in_force = _traced(model, args, kwargs, opts)  # 1-2
    plans = plan(  # 3
        gm, alpha=opts.alpha, octave=opts.octave, stride_mode=opts.stride_mode, min_size=opts.min_size,
        exclude=opts.exclude, alpha_for=opts.alpha_for, policy=opts.policy,
    )
    keep_plain_regions(gm, plans)  # 3d
    warn_unmatched_globs([str(n.target) for n in plans], dict(model.named_modules()), opts.exclude, opts.alpha_for)  # 3c
    shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
    replay = replay_options(opts, args, kwargs)
    if calibration is None:
        return _build(model, gm, fm, plans, opts, rules_in_force, shapes, replay, inplace=opts.inplace)
    return calibrate(  # 3b, then 4-7 once per candidate split
        model, gm, plans, calibration, opts.octave, opts.calibration_split,
        lambda source, candidate: _build(source, gm, fm, candidate, opts, rules_in_force, shapes, replay, inplace=True),
    )


def _traced(model: nn.Module, args: tuple, kwargs: dict, opts: ConvertOptions) -> tuple[fx.GraphModule, Any, Mapping]:
    """Stages 1-2, shared by a conversion and its replay: the traced graph with every node's fake
    value, the fake mode, and the rules in force."""
    rules_in_force = registry(opts.rules)
    # Module types that have a rule are traced as leaves, so their rule sees them whole.
    rule_types = tuple(k for k in rules_in_force if isinstance(k, type) and not k.__module__.startswith("torch.nn"))
    rule_classes = tuple(k for k in rules_in_force if isinstance(k, str) and "." in k)
    fm = fake_mode()
    gm = trace(model, opts.leaf_types + rule_types, opts.leaf_globs, fm, args, kwargs, rule_classes)  # 1
    propagate(gm, fm)  # 2: what the trace could not evaluate, with the node that fails
    return gm, fm, rules_in_force


def rebuild(
    model: nn.Module, record: Mapping[str, Any], *, rules: Optional[Mapping[RuleKey, Optional[Rule]]] = None,
    leaf_modules: Sequence[LeafSpec] = (),
) -> fx.GraphModule:
    """Replay the conversion that ``record`` (a ``ConversionRecord.to_dict()``) describes on
    ``model``, the original it was converted from (left untouched): the same trace on inputs of
    the recorded shapes, the recorded plan of every conv, stages 4-6; no data, no planning, no
    timing. The result has the converted model's structure, with the weights carried from ``model``
    (``octify.load`` then loads the saved ones). ValueError when ``model`` is not the model the
    record was made from, or when the conversion used rules (``rules=``) or leaf module types
    (``leaf_modules=``, else found among ``model``'s own module types) that are not given.

    >>> import torch, octify
    >>> conv = lambda c_in: torch.nn.Conv2d(c_in, 8, 3, padding=1)
    >>> net = torch.nn.Sequential(conv(3), conv(8), conv(8))
    >>> converted = octify.convert(net, example_inputs=torch.randn(1, 3, 16, 16))
    >>> again = rebuild(net, octify.record_of(converted).to_dict())
    >>> again.code == converted.code
    True
    """
    check_module(model, "octify.load: model")
    opts, args, kwargs = replay_inputs(model, record, rules, leaf_modules)
    with quiet_probes(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="octify: ")  # said when it was converted; the record says so
        gm, fm, rules_in_force = _traced(model, args, kwargs, opts)
        plans = recorded_plans(gm, record)
        shapes = [tuple(s) for s in record.get("input_shapes", [])]
        return _build(model, gm, fm, plans, opts, rules_in_force, shapes, dict(record.get("options") or {}), inplace=False)


def _build(
    model: nn.Module, gm: fx.GraphModule, fm: Any, plans: Mapping, opts: ConvertOptions, rules_in_force: Mapping,
    input_shapes: list, replay: dict, *, inplace: bool,
) -> fx.GraphModule:
    """Stages 4-7 for one plan: ``model`` is copied first unless ``inplace``. The record keeps the
    plan and ``replay`` (what :func:`rebuild` needs to make the same model again)."""
    fake_inputs = placeholder_values(gm)
    record = ConversionRecord(
        alpha=opts.alpha, octave=opts.octave, stride_mode=opts.stride_mode, specialized=gm.meta.get(SPECIALIZED, []),
        input_shapes=input_shapes, plan=plan_dict(plans), options=dict(replay),
    )
    recorder = Recorder(record, dict(gm.named_modules()))
    training = {name: m.training for name, m in model.named_modules()}
    root = model if inplace else copy.deepcopy(model)
    builder = GraphBuilder(root, fm, training)
    ctx = ConversionContext(
        builder, recorder, dict(gm.named_modules()), plans, octave=opts.octave, transfer_weights=opts.transfer_weights
    )
    with eval_mode(root):
        values: dict = {}
        graph = rewrite(gm, ctx, rules_in_force, values)  # 4
    record.taps = module_taps(gm, values)
    recorder.unconverted_convs(model, gm, lambda m, name: is_user_leaf(m, name, opts.leaf_types, opts.leaf_globs))
    _warn_if_nothing_converted(record)

    record.class_name = f"Oct{type(model).__name__}"
    out = fx.GraphModule(root, graph, class_name=record.class_name)
    builder.restore_training_flags(out)
    out.training = model.training
    inplace_adds(out)  # 5
    narrow_outputs(out)  # (what TorchScript needs: one-branch octave outputs typed as Tensors)
    contiguous_before_layout_reads(out, record)  # 6: view-style code stays valid in either layout
    if opts.memory_format == "channels_last":
        to_channels_last(out)
    attach_record(out, record)
    if opts.verify:
        verify_outputs(gm, out, fm, fake_inputs)  # 7
    return out


def _warn_if_nothing_converted(record: ConversionRecord) -> None:
    if record.convs and not record.converted:
        reasons = list(dict.fromkeys(c.plain_reason for c in record.convs))
        shown = "; ".join(str(r) for r in reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
        warnings.warn(
            f"octify: none of the {len(record.convs)} convs was converted ({shown}); "
            "the result computes what the original does, with no saving",
            stacklevel=3,
        )
