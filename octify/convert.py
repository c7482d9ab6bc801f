"""convert(): the pass that turns a CNN into an octave network, stage by stage.

The stages live in :mod:`octify.fx`, one file each, and run in this order (the list itself is
``octify.fx.stages.STAGES``, which this module runs):

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

import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch.fx as fx
from torch import nn

from .errors import OptionError
from .options import ConvertOptions
from .fx.plan import AlphaFor
from .fx.measure import Progress
from .fx.measured import measured_plan
from .fx.shape_prop import quiet_probes
from .fx.stages import PassState, run_stages
from .fx.tracer import LeafSpec
from .replay import recorded_plans, replay_inputs, replay_options
from .rules import Rule, RuleKey
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
        raise OptionError("octify.convert: reconstruct fits the converted model to the original, which inplace=True consumes. Hint: inplace=False.")
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
    state = PassState(model, args, kwargs, opts, inplace=opts.inplace, replay=replay_options(opts, args, kwargs))
    run_stages(state, last="plan")  # 1-3
    if calibration is None:
        return run_stages(state, first="rewrite").out  # 4-7
    return calibrate(  # 3b, then 4-7 once per candidate split
        model, state.gm, state.plans, calibration, opts.octave, opts.calibration_split,
        lambda source, candidate: run_stages(state.with_plans(candidate, source, inplace=True), first="rewrite").out,
    )


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
        state = run_stages(PassState(model, args, kwargs, opts, replay=dict(record.get("options") or {})), last="shape_prop")
        state.plans = recorded_plans(state.gm, record)  # in place of stage 3: the plan the file recorded
        return run_stages(state, first="rewrite").out
