"""What replaying a conversion needs, kept in its record, and how it is read back.

``octify.convert`` stores in ``record_of(model)`` the final plan of every conv (``plan``: fx node
name -> the ``ConvPlan`` fields, which hold everything the default policy, calibration and the
measured plan decided) and ``options``: the memory format, the leaf modules, the keys of the
user's rules and the example inputs' shapes and dtypes. :func:`octify.convert.rebuild` reads them
to make the same model again from the original, with no data and no timing (``octify.load``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.fx as fx
from torch import nn

from .options import ConvertOptions
from .fx.plan import ConvPlan
from .fx.tracer import split_leaf_specs

__all__ = [
    "plan_dict", "recorded_plans", "replay_options", "replay_inputs", "encode_inputs", "decode_inputs", "key_text", "class_text",
]


def class_text(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def key_text(key: Any) -> str:
    """A rule key as text: a class or function by its qualified name, a method name or a class's name as given."""
    if isinstance(key, type) or callable(key):
        return f"{getattr(key, '__module__', '')}.{getattr(key, '__qualname__', getattr(key, '__name__', repr(key)))}"
    return str(key)


def plan_dict(plans: Mapping[fx.Node, ConvPlan]) -> Dict[str, dict]:
    """{node name: the plan's fields}, as JSON has them (lists for tuples)."""
    out = {}
    for node, p in plans.items():
        d = dataclasses.asdict(p)
        d["low"] = None if p.low is None else [int(c) for c in p.low]
        d["cuts"] = [int(c) for c in p.cuts]
        out[node.name] = d
    return out


def recorded_plans(gm: fx.GraphModule, record: Mapping[str, Any]) -> Dict[fx.Node, ConvPlan]:
    """The recorded plans keyed by the nodes of ``gm``, the original traced again. ValueError when
    they do not fit its graph: then the model is not the one the record was made from."""
    saved = record.get("plan") or {}
    nodes = {n.name: n for n in gm.graph.nodes}
    missing = [name for name in saved if name not in nodes]
    if missing:
        raise ValueError(
            f"the model given has no {missing[0]!r} where the saved conversion planned a conv"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: expected the original the file was converted from"
        )
    plans = {}
    for name, fields in saved.items():
        try:
            d = dict(fields)
            d["low"] = None if d.get("low") is None else tuple(int(c) for c in d["low"])
            d["cuts"] = tuple(int(c) for c in d.get("cuts", ()))
            plans[nodes[name]] = ConvPlan(**d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the saved plan of {name!r} is not valid ({e}): expected the fields of ConvPlan") from None
    modules = dict(gm.named_modules())
    unplanned = [
        n.name for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(modules.get(str(n.target)), nn.modules.conv._ConvNd) and n not in plans
    ]
    if unplanned:
        raise ValueError(
            f"the model given has a conv {unplanned[0]!r} that the saved conversion did not plan: expected the original "
            "the file was converted from"
        )
    return plans


def encode_inputs(value: Any) -> Any:
    """Example inputs as JSON: a Tensor as its shape and dtype, containers and constants as they are."""
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [encode_inputs(v) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode_inputs(v) for k, v in value.items()}}
    raise TypeError(f"an example input of type {type(value).__name__}")


def decode_inputs(d: Any) -> Any:
    """The inverse of :func:`encode_inputs`, tensors of zeros."""
    if not isinstance(d, dict) or len(d) not in (1, 2):
        raise ValueError(f"expected an encoded input, found {d!r}")
    if "tensor" in d:
        dtype = getattr(torch, str(d.get("dtype", "float32")), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"expected a torch dtype, found {d.get('dtype')!r}")
        return torch.zeros([int(s) for s in d["tensor"]], dtype=dtype)
    (kind, v), = d.items()
    if kind == "value":
        return v
    if kind in ("tuple", "list"):
        items = [decode_inputs(x) for x in v]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {k: decode_inputs(x) for k, x in v.items()}
    raise ValueError(f"expected an encoded input, found {d!r}")


def replay_options(opts: ConvertOptions, args: tuple, kwargs: dict) -> dict:
    """The record's ``options``: what shaped the trace besides the plan."""
    try:
        inputs: Optional[dict] = {"args": encode_inputs(tuple(args)), "kwargs": encode_inputs(dict(kwargs))}
    except TypeError:
        inputs = None  # inputs JSON cannot describe: the model converts, but cannot be rebuilt
    return {
        "memory_format": opts.memory_format,
        "leaf_globs": list(opts.leaf_globs),
        "leaf_types": [class_text(t) for t in opts.leaf_types],
        "rules": sorted(key_text(k) for k in (opts.rules or {})),
        "inputs": inputs,
    }


def _leaf_types(model: nn.Module, names: Sequence[str], given: Sequence[type]) -> Tuple[type, ...]:
    """The recorded leaf types, each from ``given`` or else among ``model``'s own module types (a
    file's classes can sit under another module name in another process: then by class name)."""
    have = {class_text(t): t for t in given}
    for m in model.modules():
        have.setdefault(class_text(type(m)), type(m))
    out = []
    for name in names:
        cls = have.get(name)
        if cls is None:
            short = [t for n, t in have.items() if n.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]]
            cls = short[0] if len(short) == 1 else None
        if cls is not None:
            out.append(cls)
        # else: no module of that type in the model, so it was no leaf to trace around either
    return tuple(dict.fromkeys([*given, *out]))


def replay_inputs(
    model: nn.Module, record: Mapping[str, Any], rules: Optional[Mapping[Any, Any]], leaf_modules: Sequence[Any],
) -> Tuple[ConvertOptions, tuple, dict]:
    """The options and example inputs that replay ``record`` on ``model``; ValueError for what is missing."""
    if not record.get("plan"):
        raise ValueError(
            "the conversion record has no plan (a model converted by octify 0.1, before the saved format): "
            "expected a record of this version. Hint: convert the original again with octify.convert"
        )
    options = record.get("options") or {}
    if options.get("inputs") is None:
        raise ValueError("the conversion record does not describe its example inputs (of a type JSON cannot hold): it cannot be replayed")
    wanted = list(options.get("rules") or [])
    given = sorted(key_text(k) for k in (rules or {}))
    if wanted != given:
        raise ValueError(
            f"the model was converted with rules for {', '.join(wanted) or 'no key'} of your own; found rules for "
            f"{', '.join(given) or 'none'}. Hint: pass the same rules (octify.load(..., rules={{...}}))"
        )
    types, globs = split_leaf_specs(tuple(leaf_modules))
    leaf_types = _leaf_types(model, list(options.get("leaf_types") or []), types)
    args = decode_inputs(options["inputs"]["args"])
    kwargs = decode_inputs(options["inputs"]["kwargs"])
    opts = ConvertOptions(
        alpha=record["alpha"], octave=record["octave"], stride_mode=record["stride_mode"], rules=rules, verify=False,
        leaf_modules=(*leaf_types, *dict.fromkeys([*globs, *(options.get("leaf_globs") or [])])),
        memory_format=options.get("memory_format", "channels_last"),
    )
    return opts, tuple(args), dict(kwargs)
