"""Save a model as weights and a recipe, and load it back without running code from the file.

``octify.save(model, "resnet50_oct.safetensors")`` writes one standard safetensors file: the
model's weights, and in its header a JSON recipe (:mod:`octify.recipe`) that says how the model
is made from its original: the conversion's plan (every conv's alpha and low channels, whatever
chose them: the default policy, calibration or the measured latency plan), ``octify.freeze``'s
settings, the train/eval flags. ``octify.load(path, model=original)`` replays the conversion on
the original (no data, no timing), checks that the result has the structure saved, loads the
weights and the conversion record. A file converted from ``torchvision:NAME`` or ``timm:NAME``
(``spec=``, as the command line saves them) rebuilds its original itself:

    >>> import torch, octify, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1),
    ...                           torch.nn.Conv2d(8, 4, 3, padding=1)).eval()
    >>> oct_net = octify.convert(net, example_inputs=torch.randn(1, 3, 32, 32))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = octify.save(oct_net, os.path.join(folder, "net_oct.safetensors"))
    ...     back = octify.load(path, model=net)
    >>> x = torch.randn(2, 3, 32, 32)
    >>> torch.equal(back(x), oct_net(x)), octify.record_of(back).to_dict() == octify.record_of(oct_net).to_dict()
    (True, True)

Nothing in the file is executed: the original's code is the one you give (or torchvision's,
timm's), and the file only holds tensors and JSON. Files of octify 0.1 (``.pt``, pickled with
``torch.save``) run code stored in them when loaded: ``octify.load`` reads them only with
``trusted=True``; ``octify.save`` then converts them to the new format.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .recipe import (
    FORMAT, PICKLE_SUFFIXES, decode_args, encode_args, file_kind, first_difference, read_recipe, state_tensors,
    structure_hash, versions, write_file,
)

__all__ = ["save", "load", "build_original", "pickled_data", "PICKLED"]

PathLike = Union[str, "os.PathLike[str]"]

PICKLED = (
    "{path} is a pickled model (octify 0.1 format, or torch.save): loading it runs code stored in the file. "
    "Hint: if you trust it, octify.load({path!r}, trusted=True) / --trusted; then octify.save(model, '{stem}.safetensors') to convert it"
)

# Where version 0.1.0 kept classes and functions that pickled files refer to by module path
# (the pass's inserted modules, the fused conv -> batch norm call in generated code). Each old
# path is an alias of the module that holds them now, so that those files load (trusted=True).
LEGACY_MODULES = {
    "octify._modules": "octify.nn.legacy_modules",
    "octify._fuse": "octify.fx.fuse",
    "octify.fold": "octify.fx.fold",
    "octify.report.theory": "octify.nn.cost",
}


def _install_legacy_aliases() -> None:
    for old, new in LEGACY_MODULES.items():
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(new)


_install_legacy_aliases()


def _rebuild_graph_module(reduce_fn: Any, reduce_args: tuple, meta: dict, class_name: Optional[str] = None) -> nn.Module:
    """Unpickling hook that files pickled by octify 0.1 name: torch.fx's own reconstruction, then
    the GraphModule's ``meta`` (the conversion record) and class name (``OctResNet``) put back."""
    gm = reduce_fn(*reduce_args)
    if isinstance(getattr(gm, "meta", None), dict):
        gm.meta.update(meta)
    if class_name and type(gm) is not torch.fx.GraphModule:  # each GraphModule has a class of its own
        type(gm).__name__ = class_name
    return gm


def save(model: nn.Module, path: PathLike, *, spec: Optional[str] = None, model_args: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model``'s weights and recipe to ``path``, a ``.safetensors`` file (atomically: a
    failed save leaves no partial file); returns the path written.

    ``model`` is one ``octify.convert`` returned (fine-tuned, reconstructed, frozen: all kept), a
    model ``octify.freeze`` made of a plain one, or any plain module (then the file holds its
    weights). ``spec`` (``torchvision:NAME``, ``timm:NAME``, ``file.py:NAME``) and ``model_args``
    say how the original is built, so that ``octify.load`` (for the first two) or the command line
    (for all) can rebuild it without being given it. TypeError for a non-module, ValueError for a
    path that does not end in ``.safetensors`` or a model that cannot be rebuilt (a GraphModule you
    traced yourself), OSError when the path cannot be written.
    """
    from .fx.freeze import FREEZE_META
    from .record import find_record

    if not isinstance(model, nn.Module):
        raise TypeError(f"octify.save: expected an nn.Module, found {type(model).__name__}.")
    target = Path(os.fspath(path))
    if target.suffix.lower() != ".safetensors":
        hint = f" Hint: octify.save(model, {str(target.with_suffix('.safetensors'))!r})" if target.suffix.lower() in PICKLE_SUFFIXES else ""
        raise ValueError(f"octify.save writes .safetensors files (weights and a recipe, no pickle): expected a path ending .safetensors, found {str(target)!r}.{hint}")
    if target.is_dir():
        raise IsADirectoryError(21, "is a directory", str(target))
    record = find_record(model)
    meta = getattr(model, "meta", None)
    plain_frozen = meta.get(FREEZE_META) if record is None and isinstance(meta, dict) else None
    if record is not None:
        if not record.plan:
            raise ValueError(
                "octify.save: the model's conversion record has no plan (converted by octify 0.1, before this format): expected a model "
                "converted by this version. Hint: convert the original again with octify.convert, then save that"
            )
        if record.options.get("inputs") is None:
            raise ValueError("octify.save: the model was converted on example inputs that the recipe cannot describe (not tensors, "
                             "numbers, strings or containers of them): it could not be rebuilt. Hint: convert with tensor inputs")
    elif isinstance(model, torch.fx.GraphModule) and plain_frozen is None:
        raise ValueError(
            f"octify.save: expected a model octify converted or froze, or a plain module; found a torch.fx GraphModule ({type(model).__name__}) with no "
            "octify record (traced by you?), which octify cannot rebuild on load. Hint: save the module you traced instead"
        )
    frozen = (record.frozen or None) if record is not None else plain_frozen
    recipe = {
        "format": FORMAT,
        "versions": versions(),
        "spec": spec,
        "model_args": encode_args(dict(model_args or {})),
        "record": record.to_dict() if record is not None else None,
        "freeze": dict(frozen) if frozen else None,
        "training": [name for name, m in model.named_modules() if m.training],
        "structure": structure_hash(model),
    }
    write_file(target, state_tensors(model), recipe)
    return target


def load(
    path: PathLike, model: Optional[nn.Module] = None, *, map_location: Optional[Any] = None,
    rules: Optional[Mapping[Any, Any]] = None, leaf_modules: Sequence[Any] = (), trusted: bool = False,
) -> nn.Module:
    """The model :func:`save` wrote to ``path``, made again from its original and given the saved
    weights, train/eval flags and conversion record.

    ``model`` is the original (an nn.Module, deep-copied, never changed); by default the one the
    recipe names, for ``torchvision:NAME`` and ``timm:NAME`` (other specs need ``model=``).
    ``rules`` and ``leaf_modules``: those the conversion was given, where it used rules of your
    own or leaf module types that ``model`` does not contain. ``map_location`` (a device) moves
    the result there. ValueError when the file is not octify's, when it was damaged, or when the
    model rebuilt has another structure than the saved one (``model`` is not the original).
    A pickled file (octify 0.1's ``.pt``, any ``torch.save``) is refused: loading it would run code
    stored in it. With ``trusted=True`` it is loaded with ``torch.load(weights_only=False)``.
    """
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(2, "no such file (expected a model saved with octify.save)", str(p))
    kind = file_kind(p)
    if kind == "pickle":
        what = pickled_data(p)  # a state_dict or other data reads safely, and is not a model
        if what is not None:
            raise TypeError(f"{p} holds {what}: expected a whole model saved with octify.save(model, path). "
                            "For a state_dict, build the model and call model.load_state_dict(torch.load(path)).")
        if not trusted:
            raise ValueError(PICKLED.format(path=str(p), stem=p.stem))
        return _load_pickle(p, map_location)
    if kind != "safetensors":
        raise ValueError(f"{p} is not a file octify.save wrote: expected a .safetensors file with an octify recipe, found neither safetensors nor a pickle")
    recipe = read_recipe(p)
    if model is None:
        model, source = build_original(recipe, p), str(recipe.get("spec"))
    elif not isinstance(model, nn.Module):
        raise TypeError(f"octify.load: model must be the original nn.Module, found {type(model).__name__}")
    else:
        source = f"the model given ({type(model).__name__})"
    out = _rebuild(recipe, model, p, rules, leaf_modules, source)
    _load_weights(out, p)
    training = set(recipe["training"])
    for name, m in out.named_modules():
        m.training = name in training
    if map_location is not None:
        out.to(map_location)
    return out


def _rebuild(recipe: dict, model: nn.Module, p: Path, rules: Any, leaf_modules: Sequence[Any], source: str) -> nn.Module:
    """The saved model's structure, made from ``model``: the conversion replayed, then the freeze."""
    from .convert import rebuild
    from .errors import ConversionError
    from .fx.freeze import SETTINGS, freeze
    from .record import ConversionRecord, attach_record

    record, settings = recipe.get("record"), recipe.get("freeze")
    try:
        saved_record = ConversionRecord.from_dict(record) if record is not None else None
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{p}: its recipe's conversion record is not valid ({e}): the file is damaged or was edited") from None
    # A frozen plain model's settings give the shapes its sums were written in place on.
    inputs = _recorded_inputs(settings.get("inputs"), p) if isinstance(settings, dict) else None
    try:
        out = rebuild(model, record, rules=rules, leaf_modules=leaf_modules) if record is not None else copy.deepcopy(model)
        if settings is not None:
            settings = {k: v for k, v in settings.items() if k in SETTINGS}
            out = freeze(out.eval(), inplace=True, example_inputs=inputs, **settings)
    except (ValueError, ConversionError) as e:
        text = " ".join(str(e).split()).rstrip(".")
        raise ValueError(f"{p} cannot be rebuilt from the model given: {text}.{'' if 'Hint:' in text else ' ' + _HINT}") from None
    found = structure_hash(out)
    if found != recipe["structure"]:
        diff = first_difference(p, out)
        raise ValueError(
            f"{p} was saved from a model of another structure than the one rebuilt from {source}"
            f" ({'first difference: ' + diff if diff else 'the weights agree; the layers code or settings differ'}). {_HINT}"
        )
    if saved_record is not None:
        attach_record(out, saved_record)
    return out


_HINT = "Hint: pass the original the file was converted from (and the same --model-arg)"


def _recorded_inputs(described: Any, p: Path) -> Optional[tuple]:
    """Uninitialised inputs of the shapes and dtypes a frozen plain model's settings list
    (``describe`` of its example inputs); None when they list none; ValueError when the list
    is not one."""
    if not described:
        return None
    inputs = []
    for d in described if isinstance(described, list) else [described]:
        shape = d.get("shape") if isinstance(d, dict) else None
        dtype = getattr(torch, str(d.get("dtype")), None) if isinstance(d, dict) else None
        if not isinstance(described, list) or not isinstance(shape, list) or not all(isinstance(v, int) and v >= 0 for v in shape) \
                or not isinstance(dtype, torch.dtype):
            raise ValueError(f"{p}: its recipe's freeze inputs must be a list of {{shape, dtype}}, found {d!r}: the file is damaged or was edited")
        inputs.append(torch.empty(shape, dtype=dtype))
    return tuple(inputs)


def _load_weights(model: nn.Module, p: Path) -> None:
    from safetensors.torch import load_file

    diff = first_difference(p, model)
    if diff is not None:
        raise ValueError(f"{p} does not hold the weights its recipe describes ({diff}): the file is damaged or was edited")
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))
    model.load_state_dict(load_file(str(p), device=str(device)), strict=True)


def build_original(recipe: dict, p: Path) -> nn.Module:
    """The original a recipe names, for ``torchvision:NAME`` and ``timm:NAME`` (random weights,
    nothing downloaded: the saved weights replace them); ValueError for anything else."""
    spec = recipe.get("spec")
    kwargs = {k: v for k, v in decode_args(recipe.get("model_args")).items() if k not in ("weights", "pretrained")}
    if not spec:
        raise ValueError(f"{p} does not say what it was converted from (saved without spec=): expected model=, the original. "
                         f"Hint: octify.load({str(p)!r}, model=MyNet())")
    prefix, _, name = spec.partition(":")
    if prefix.lower() in ("torchvision", "tv") and name:
        import torchvision.models as tvm

        try:
            builder = tvm.get_model_builder(name)
        except ValueError as e:
            raise ValueError(f"{p} was converted from {spec}, which this torchvision does not have ({e}): expected model=, the original") from None
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs["weights_backbone"] = None
        return builder(weights=None, **kwargs)
    if prefix.lower() == "timm" and name:
        try:
            import timm
        except ImportError:
            from .errors import MissingDependency

            raise MissingDependency(f"{p} was converted from {spec}, which needs timm. Hint: pip install timm, or pass model=") from None
        return timm.create_model(name, pretrained=False, **kwargs)
    raise ValueError(
        f"{p} was converted from {spec}: octify.load builds torchvision:NAME and timm:NAME itself, expected model= for others. "
        f"Hint: octify.load({str(p)!r}, model=<the model {spec} builds>); the octify command line builds it from the file"
    )


def pickled_data(p: Path) -> Optional[str]:
    """What a pickled file holds, in words, when ``torch.load(weights_only=True)`` reads it (tensors
    and containers: no code runs); None when it holds more (a pickled model, say)."""
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- not readable without running code
        return None
    return _described(obj)


def _described(obj: Any) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "a state_dict (a dict of tensors)"
    if isinstance(obj, dict):
        return f"a dict with keys {', '.join(map(str, list(obj)[:5]))}{', ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__name__}"


def _load_pickle(p: Path, map_location: Optional[Any]) -> nn.Module:
    """octify 0.1's format (trusted files only): ``torch.load(weights_only=False)``."""
    obj = torch.load(str(p), map_location=map_location, weights_only=False)
    if not isinstance(obj, nn.Module):
        raise TypeError(
            f"{p} holds {_described(obj)}: expected a whole model saved with octify.save(model, path). "
            f"For a state_dict, build the model and call model.load_state_dict(torch.load(path))."
        )
    return obj
