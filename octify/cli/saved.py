"""Models saved by octify, as the commands read them.

A ``.safetensors`` file written by ``octify convert`` (``octify.save``) holds the weights and a
recipe naming the original (``torchvision:resnet50``, ``file.py:NAME`` and its ``--model-arg``):
:func:`load_saved` builds that original through the command line's own loader, or takes MODEL
when the command has one, and ``octify.load`` makes the saved model again from it. A pickled
``.pt`` (octify 0.1, ``torch.save``) runs code stored in it when loaded: only with ``--trusted``.

``octify finetune MODEL CONVERTED`` checks its CONVERTED for what people pass instead: a
state_dict, a plain model, the two arguments swapped, or an original that is not the model
CONVERTED was made from. Each mistake is a usage error that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import torch
from torch import nn

from ..record import ConversionRecord, find_record, model_name, recorded_inputs
from .console import LoadError, SpecError, describe_exception, one_line, usage
from .loading import LoadedModel, build_model, check_file, path_first, split_spec

__all__ = ["load_model", "from_saved", "load_saved", "converted_record", "load_converted", "check_swapped", "check_made_from"]

_SWAPPED = ("Hint: MODEL (the original) comes first, then CONVERTED: "
            "octify finetune MODEL CONVERTED.safetensors --weights CKPT --data DIR.")


# --------------------------------------------------------------------------- MODEL as a saved file


def load_model(spec: str, kwargs: Optional[dict] = None, *, trusted: bool = False) -> LoadedModel:
    """Resolve any MODEL to a model: a saved file is made again (:func:`from_saved`), code is built
    (:func:`octify.cli.loading.build_model`); ``trusted`` lets a pickled file load (it runs code
    stored in it)."""
    kind, where, _ = split_spec(spec)
    if kind != "saved":
        return build_model(spec, kwargs)
    if kwargs:
        raise SpecError(
            f"--model-arg {', '.join(kwargs)}: {spec} is a saved model, built already. "
            "Hint: give constructor arguments with a class, factory or library model."
        )
    return from_saved(where, trusted)


def from_saved(path: str, trusted: bool) -> LoadedModel:
    """MODEL given as a saved file: the model it holds."""
    p = Path(path)
    check_file(p, "a model saved by octify convert or octify.save")
    from ..recipe import file_kind

    rebuilt = ""
    if file_kind(p) == "pickle":
        model = _from_pickle(p, trusted)
    else:
        model, spec = load_saved(p, None, trusted)
        rebuilt = f", rebuilt from {spec}"
    stem = p.stem[:-4] if p.stem.endswith("_oct") else p.stem
    record = find_record(model)  # a converted model says whether it was converted from random weights
    return LoadedModel(model, stem, f"{model_name(model)} saved in {path}{rebuilt}", random_weights=record is not None and record.random_weights)


def _from_pickle(p: Path, trusted: bool) -> nn.Module:
    """A model pickled whole (octify 0.1's format, torch.save), loaded only when ``trusted``."""
    from ..io import PICKLED, load, pickled_data

    what = pickled_data(p)
    if what is not None:
        raise SpecError(f"{p} holds {what}: expected a whole model saved with octify.save. "
                        "Hint: give the model's code as MODEL and pass this file with --weights.")
    if not trusted:
        raise SpecError(PICKLED.format(path=str(p), stem=p.stem))
    try:
        # classes of a model file it refers to: importable from the cwd or from beside the file
        with path_first(os.getcwd()), path_first(str(p.resolve().parent)):
            return load(p, trusted=True)
    except (TypeError, ValueError) as e:  # load() names what it found instead of a model
        raise SpecError(f"{e} Hint: give the model's code as MODEL and pass this file with --weights.") from e
    except ModuleNotFoundError as e:
        raise LoadError(
            f"loading {p} failed: the model refers to classes of the module '{e.name}', which is not importable. "
            f"Hint: run from the directory of {e.name}.py, or add it to PYTHONPATH."
        ) from e
    except Exception as e:
        raise LoadError(f"loading {p} failed: {describe_exception(e)}") from e


def load_saved(path: Path, original: Optional[nn.Module], trusted: bool = False, what: str = "MODEL") -> tuple[nn.Module, str]:
    """The model octify saved at ``path`` (a .safetensors file), made again from ``original`` or,
    when None, from the original its recipe names (made by :func:`load_model`: file.py specs
    too, found from the current directory, else from beside the file); and that spec ("" when
    ``original`` was given). ``what`` names the file in messages (MODEL, CONVERTED)."""
    from ..io import load
    from ..recipe import decode_args, read_recipe

    try:
        recipe = read_recipe(path)
    except ValueError as e:
        raise SpecError(f"{what} {one_line(str(e))}") from None
    spec = ""
    if original is None:
        spec = recipe.get("spec") or ""
        if not spec:
            raise SpecError(f"{what} {path} does not say what model it was converted from (written by octify.save without spec=). "
                            "Hint: load it in Python with octify.load(path, model=the_original), or convert again with octify convert.")
        try:
            original = load_model(_located(spec, path), decode_args(recipe.get("model_args")), trusted=trusted).model
        except LoadError as e:
            raise type(e)(f"{what} {path} was converted from {spec}, which does not load here: {one_line(str(e))}") from None
    try:
        model = load(path, model=original)
    except ValueError as e:
        raise SpecError(f"{what} {one_line(str(e))}") from None
    return model, spec


def _located(spec: str, saved: Path) -> str:
    """A file.py spec as found from the current directory, else from beside the saved file."""
    kind, where, name = split_spec(spec)
    if kind == "zoo" or Path(where).is_absolute() or Path(where).exists():
        return spec
    beside = saved.resolve().parent / where
    if beside.exists():
        return f"{beside}:{name}" if name is not None else str(beside)
    return spec


# --------------------------------------------------------------------------- octify finetune MODEL CONVERTED


def converted_record(path: str, trusted: bool = False) -> Optional[ConversionRecord]:
    """The conversion record of the model saved at ``path``, read without rebuilding it (a
    .safetensors file's recipe; a pickle only when ``trusted``); None when it holds anything else."""
    from ..recipe import file_kind, read_recipe

    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".safetensors", ".pt", ".pth", ".pkl"):
        return None
    try:
        if file_kind(p) == "safetensors":
            rec = read_recipe(p).get("record")
            return ConversionRecord.from_dict(rec) if rec is not None else None
        return find_record(_from_pickle(p, trusted)) if trusted else None
    except Exception:  # not a model, not loadable, or a plain model: not a converted one
        return None


def check_swapped(model_spec: str, converted_path: str, trusted: bool = False) -> None:
    """Refuse MODEL when it is a converted model (the arguments swapped, or two converted files)."""
    if converted_record(model_spec, trusted) is not None:
        raise usage(f"MODEL {model_spec} is a model converted by octify: expected the original model "
                    f"(file.py:NAME, torchvision:NAME, timm:NAME or a saved plain model). {_SWAPPED}")


def load_converted(path: str, model_spec: str, original: Optional[nn.Module], trusted: bool = False) -> tuple[nn.Module, ConversionRecord]:
    """The model octify convert saved at ``path``, and its record: made again from ``original``
    (MODEL) for a .safetensors file; with ``original`` None, only checked (a model of None)."""
    from ..recipe import file_kind, read_recipe

    p = Path(path)
    if not p.is_file():
        looks_like_model = p.suffix == ".py" or ":" in path or converted_record(model_spec, trusted) is not None
        raise usage(f"CONVERTED {path}: no such file (expected a converted model saved by octify convert)."
                    + (f" {_SWAPPED}" if looks_like_model else ""))
    try:
        if file_kind(p) == "pickle":
            converted: Any = _from_pickle(p, trusted)
            record = find_record(converted)
        else:
            converted = None
            rec = read_recipe(p).get("record")
            record = ConversionRecord.from_dict(rec) if rec is not None else None
            if record is not None and original is not None:
                converted, _ = load_saved(p, original, trusted, what="CONVERTED")
    except LoadError as e:
        text = one_line(str(e))
        if "holds a state_dict" in text:
            text = text.split(" Hint:")[0] + " Hint: pass the file octify convert wrote (octify convert MODEL --weights CKPT -o CONVERTED.safetensors); " \
                "a state_dict goes to --weights, for MODEL."
        raise usage(f"CONVERTED {text}" if not text.startswith("CONVERTED") else text) from None
    except ValueError as e:
        raise usage(f"CONVERTED {one_line(str(e))}") from None
    if record is None:
        raise usage(f"CONVERTED {path}: expected a model returned by octify.convert, found a model with no conversion record. "
                    "Hint: octify convert MODEL -o CONVERTED.safetensors first.")
    return converted, record


def _shapes(out: Any) -> List[tuple]:
    leaves = out if isinstance(out, (tuple, list)) else list(out.values()) if isinstance(out, dict) else [out]
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in leaves]


def check_made_from(original: nn.Module, converted: nn.Module, model_spec: str, converted_path: str) -> None:
    """Run both on the converted model's recorded example input: outputs of another structure or
    shape mean MODEL is not the model CONVERTED was made from."""
    x = recorded_inputs(converted)
    if x is None:
        return
    with torch.no_grad():
        try:
            want = _shapes(original(*x))
        except Exception as e:
            raise usage(f"MODEL {model_spec} fails on the input CONVERTED was converted for ({', '.join(str(tuple(t.shape)) for t in x)}): "
                        f"{type(e).__name__}: {one_line(str(e))[:200]}. Hint: is MODEL the model {converted_path} was made from?") from None
        got = _shapes(converted(*x))
    if want != got:
        raise usage(f"MODEL {model_spec} outputs {want} where {converted_path} outputs {got} on the same input: they are not the "
                    f"same network. Hint: is MODEL the model {converted_path} was made from (with the same --model-arg)?")
