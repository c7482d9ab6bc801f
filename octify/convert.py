"""convert(): trace -> plan -> rewrite -> verify, the pass that turns a CNN into an octave network."""

from __future__ import annotations

import copy
import fnmatch
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.fx as fx
from torch import nn

from . import _builtin_rules  # noqa: F401  (fills the rule registry)
from ._fuse import fuse_conv_bn
from ._inplace import inplace_adds
from ._plan import AlphaFor, plan
from ._rewrite import Rewriter
from ._trace import LeafSpec, eval_mode, fake_mode, fakeify, propagate, split_leaf_specs, trace
from ._verify import verify as _verify
from .nn.partition import _check_alpha
from .record import ConversionRecord, ConvRecord
from .rules import Rule, RuleKey, registry

__all__ = ["convert"]


def _example_inputs(model: nn.Module, example_inputs: Any) -> tuple:
    if example_inputs is None:
        ref = next(iter(model.parameters()), None)
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        return (torch.empty(1, 3, 224, 224, dtype=dtype),)
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        return tuple(example_inputs)
    raise TypeError(
        f"example_inputs must be a Tensor or a tuple of positional inputs, found {type(example_inputs).__name__}"
    )


def _globs(value: Union[str, Sequence[str]], what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(v, str) for v in value):
        raise TypeError(f"{what} must be glob strings over qualified module names, found {value!r}")
    return tuple(value)


def convert(
    model: nn.Module,
    alpha: float = 0.5,
    *,
    example_inputs: Any = None,
    octave: int = 2,
    stride_mode: str = "conv",
    min_size: int = 8,
    exclude: Union[str, Sequence[str]] = (),
    alpha_for: AlphaFor = None,
    leaf_modules: Sequence[LeafSpec] = (),
    rules: Optional[Mapping[RuleKey, Optional[Rule]]] = None,
    transfer_weights: bool = True,
    verify: bool = True,
    inplace: bool = False,
    policy: str = "default",
    memory_format: str = "channels_last",
    fuse_bn: bool = True,
) -> fx.GraphModule:
    """Turn ``model``'s Conv2d layers into OctConv2d layers, threading (high, low) pairs between them.

    Returns a ``torch.fx.GraphModule`` in the model's train/eval mode whose OctConv2d and
    OctBatchNorm2d modules keep the qualified names of the layers they replace; its
    ``octify.record_of(...)`` tells what was done to each conv and every merge inserted.
    ``model`` is left untouched unless ``inplace=True`` (which reuses its modules instead of
    copying them; the model itself must not be used afterwards).

    ``policy="latency"`` keeps plain the regions where octave layers cannot pay for themselves on
    a CPU (small maps, depthwise and thin convs), each recorded with its reason.
    ``memory_format="channels_last"`` (the default) lays the converted model's 4-D weights out
    channels-last, the layout in which its many small convolutions run fast; inputs in either
    layout are accepted. ``"preserve"`` keeps the original layout.
    ``fuse_bn=True`` (the default) runs each conv -> batch norm pair as one call: in training it is
    the conv then the batch norm, as before; in eval mode outside autograd it is one conv whose
    weights have the batch norm folded in, cached until a parameter or statistic changes. Both
    modules keep their names and parameters (``record_of(...).fused`` lists the pairs).

    >>> import torch, torchvision, octify
    >>> net = torchvision.models.resnet18().eval()
    >>> oct_net = octify.convert(net, alpha=0.5, octave=1)   # octave=1: same outputs as net
    >>> x = torch.randn(1, 3, 64, 64)
    >>> bool((oct_net(x) - net(x)).abs().max() < 1e-3)
    True
    >>> octify.record_of(oct_net).count("merge")
    0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects an nn.Module, found {type(model).__name__}")
    alpha = _check_alpha(alpha, "alpha")
    if isinstance(octave, bool) or not isinstance(octave, int) or octave < 1:
        raise ValueError(f"octave must be an integer >= 1, found {octave!r}")
    if stride_mode not in ("conv", "pool"):
        raise ValueError(f"stride_mode must be 'conv' or 'pool', found {stride_mode!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative integer, found {min_size!r}")
    if alpha_for is not None and not (callable(alpha_for) or isinstance(alpha_for, Mapping)):
        raise TypeError(f"alpha_for must be a dict of glob -> alpha or a callable, found {type(alpha_for).__name__}")
    if isinstance(alpha_for, Mapping):
        for pattern, a in alpha_for.items():
            _check_alpha(a, f"alpha_for[{pattern!r}]")
    if policy not in ("default", "latency"):
        raise ValueError(f"policy must be 'default' or 'latency', found {policy!r}")
    if memory_format not in ("channels_last", "preserve"):
        raise ValueError(f"memory_format must be 'channels_last' or 'preserve', found {memory_format!r}")
    exclude = _globs(exclude, "exclude")
    inputs = _example_inputs(model, example_inputs)
    leaf_types, leaf_globs = split_leaf_specs(leaf_modules)
    rules_in_force = registry(rules)
    # Module types that have a rule are traced as leaves, so their rule sees them whole.
    rule_types = tuple(k for k in rules_in_force if isinstance(k, type) and not k.__module__.startswith("torch.nn"))

    gm = trace(model, leaf_types + rule_types, leaf_globs)
    fm = fake_mode()
    fake_inputs = fakeify(fm, inputs)
    propagate(gm, fm, fake_inputs)
    plans = plan(
        gm, alpha=alpha, octave=octave, stride_mode=stride_mode, min_size=min_size, exclude=exclude,
        alpha_for=alpha_for, policy=policy,
    )

    record = ConversionRecord(alpha=alpha, octave=octave, stride_mode=stride_mode)
    training = {name: m.training for name, m in model.named_modules()}
    root = model if inplace else copy.deepcopy(model)
    rw = Rewriter(gm, root, plans, rules_in_force, record, fm, octave=octave, transfer_weights=transfer_weights, training=training)
    with eval_mode(root):
        graph = rw.run()
    _record_leaf_convs(gm, model, leaf_types, leaf_globs, record)

    out = fx.GraphModule(root, graph, class_name=f"Oct{type(model).__name__}")
    for name, flag in rw.new_modules.items():
        out.get_submodule(name).train(flag)
    out.training = model.training
    if fuse_bn:
        record.fused = fuse_conv_bn(out)
    inplace_adds(out)
    if memory_format == "channels_last":
        out.to(memory_format=torch.channels_last)
    out.meta["octify"] = record
    # torch.save/torch.load of a GraphModule drops its meta but keeps plain attributes, and
    # copy.deepcopy keeps meta but re-creates attributes only from "_user_preserved_attributes":
    # the record goes in all three places so that record_of works after either.
    out._octify_record = record
    out.meta.setdefault("_user_preserved_attributes", {})["_octify_record"] = record
    if verify:
        _verify(gm, out, fm, fake_inputs)
    return out


def _record_leaf_convs(
    gm: fx.GraphModule, model: nn.Module, leaf_types: tuple, leaf_globs: tuple, record: ConversionRecord
) -> None:
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if isinstance(mod, nn.Conv2d):
            continue
        if not (isinstance(mod, leaf_types) or any(fnmatch.fnmatchcase(node.target, g) for g in leaf_globs)):
            continue
        for sub, m in mod.named_modules():
            if isinstance(m, nn.Conv2d) and sub:
                record.convs.append(ConvRecord(f"{node.target}.{sub}", 0.0, 0.0, (), (), f"inside leaf module {node.target}"))
