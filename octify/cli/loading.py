"""Resolve a MODEL argument of the command line to an ``nn.Module``.

MODEL is one of

- ``path/to/file.py``: the file is imported and the first of these is taken: a ``build_model()``,
  ``get_model()`` or ``create_model()`` function; a module-level ``model`` nn.Module instance; the
  one nn.Module subclass defined in that file that builds without arguments.
- ``path/to/file.py:NAME``: a class, factory function or nn.Module instance of that file
  (``NAME`` may be dotted: ``file.py:zoo.small``).
- ``torchvision:NAME``: a ``torchvision.models`` builder, called with ``weights=None``.
- ``timm:NAME``: ``timm.create_model(NAME, pretrained=False)`` (timm installed).
- ``path/to/file.safetensors``: a model saved by ``octify convert`` / ``octify.save``, made again
  from the original its recipe names with the saved weights; read by :mod:`.saved` (whose
  ``load_model`` takes any MODEL), which builds that original here. A pickled ``file.pt`` (octify
  0.1, ``torch.save(model)``) runs code stored in it when loaded: only with ``--trusted``.

Constructor arguments (``--model-arg KEY=VALUE``) go to the class or factory, the torchvision
builder or ``timm.create_model``; a file with several candidates takes the one they fit.

Errors are :class:`LoadError` (exit code 1: loading failed) or its subclass :class:`SpecError`
(exit code 2: the command line names something that cannot be used); their messages are one line
that says what was expected, what was found and, where one helps, a hint.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import inspect
import keyword
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

from torch import nn

from .console import LoadError, SpecError, describe_exception
from .initial_weights import draws_its_weights
from .libraries import from_timm, from_torchvision

__all__ = ["LoadError", "SpecError", "LoadedModel", "build_model", "split_spec", "describe_exception", "check_file", "path_first", "FACTORY_NAMES"]

FACTORY_NAMES = ("build_model", "get_model", "create_model")
INSTANCE_NAME = "model"
SAVED_SUFFIXES = (".safetensors", ".pt", ".pth", ".pkl")
_FORMS = "expected path/to/file.py, file.py:NAME, torchvision:NAME, timm:NAME or a model saved as file.safetensors"
_LIBRARIES = {"torchvision": "torchvision", "tv": "torchvision", "timm": "timm"}



@dataclass
class LoadedModel:
    model: nn.Module
    name: str  # short name, used for the default output file: resnet18, custom_cnn, ...
    source: str  # what was loaded, in words: "class CustomCNN() of examples/custom_cnn.py"
    module_name: Optional[str] = None  # sys.modules name the model file was imported under
    random_weights: bool = False  # built with the random weights its constructor drew (cli/initial_weights.py)


# --------------------------------------------------------------------------- parsing MODEL


def split_spec(spec: str) -> tuple[str, str, Optional[str]]:
    """``(kind, where, name)`` with kind "zoo", "file" or "saved"."""
    spec = spec.strip()
    if not spec:
        raise SpecError(f"empty MODEL: {_FORMS}")
    prefix = spec.split(":", 1)[0].lower()
    if ":" in spec and prefix in _LIBRARIES:
        library, name = _LIBRARIES[prefix], spec.split(":", 1)[1].strip()
        if not name:
            raise SpecError(f"'{spec}' names no {library} model: expected {library}:NAME, e.g. {library}:resnet50")
        return "zoo", library, name
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith(".py") and tail and not tail.startswith(("\\", "/")):
        return "file", head, tail.strip()
    if spec.lower().endswith(SAVED_SUFFIXES):
        return "saved", spec, None
    return "file", spec, None


def build_model(spec: str, kwargs: Optional[dict] = None) -> LoadedModel:
    """Build the model that ``spec`` names in code (a file or a library; see the module docstring),
    in whatever mode it builds in; ``kwargs`` are constructor arguments. A saved file is read by
    :func:`octify.cli.saved.load_model`, which calls this for the original it records."""
    kwargs = dict(kwargs or {})
    kind, where, name = split_spec(spec)
    if kind == "zoo":
        model, canonical, source = (from_torchvision if where == "torchvision" else from_timm)(name, kwargs)
        trained = bool(kwargs.get("weights") or kwargs.get("pretrained"))  # --model-arg weights=... / pretrained=True
        return LoadedModel(model, canonical, source, random_weights=not trained)
    if kind == "saved":
        raise SpecError(f"{spec} is a saved model: expected a model's code (file.py, file.py:NAME, torchvision:NAME or timm:NAME)")
    return _from_file(where, name, kwargs)


# --------------------------------------------------------------------------- python files


def check_file(p: Path, what: str) -> None:
    if not p.exists():
        hint = ""
        if p.suffix == "" and p.name and "/" not in str(p):
            try:
                import torchvision.models as tvm

                if p.name.lower() in tvm.list_models():
                    hint = f" Hint: for the torchvision model, write torchvision:{p.name}."
            except Exception:  # pragma: no cover - torchvision is a dependency
                pass
        raise SpecError(f"no such file: {p} ({_FORMS}).{hint}")
    if p.is_dir():
        raise SpecError(f"{p} is a directory: {_FORMS}.")
    if not os.access(p, os.R_OK):
        raise LoadError(f"cannot read {p}: permission denied.")


def _module_name_for(p: Path) -> str:
    stem = p.stem
    if stem.isidentifier() and not keyword.iskeyword(stem) and stem not in sys.modules and _free_name(stem, p):
        # Importable by its own name, so that a saved model which refers to its classes can be
        # loaded again from the file's directory (or with it on PYTHONPATH).
        return stem
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    name, n = f"_octify_model_{safe}", 1
    while name in sys.modules:
        n += 1
        name = f"_octify_model_{safe}_{n}"
    return name


def _free_name(name: str, p: Path) -> bool:
    """True when importing ``name`` finds nothing else than the file ``p`` (no installed package of that name)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is None or (spec.origin is not None and Path(spec.origin).resolve() == p.resolve())


@contextlib.contextmanager
def path_first(directory: str) -> Iterator[None]:
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)


def import_file(path: str) -> ModuleType:
    """Import a python file as a module, with its directory on sys.path while it runs."""
    p = Path(path)
    check_file(p, "a python file")
    if p.suffix != ".py":
        raise SpecError(f"{p} is not a python file: {_FORMS}.")
    resolved = p.resolve()
    name = _module_name_for(p)
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always have a loader
        raise LoadError(f"cannot import {p}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with path_first(str(resolved.parent)):
            spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        where = f"{e.filename or p}:{e.lineno}" if e.lineno else str(e.filename or p)
        line = f": {e.text.strip()}" if e.text and e.text.strip() else ""
        raise LoadError(f"syntax error in {where}: {e.msg}{line}") from e
    except BaseException as e:
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, SystemExit):
            raise LoadError(f"importing {p} called sys.exit({e.code}). Hint: guard scripts with if __name__ == '__main__':") from None
        raise LoadError(f"importing {p} failed: {describe_exception(e)}{_where(e, resolved)}") from e
    return module


def _from_file(path: str, name: Optional[str], kwargs: dict) -> LoadedModel:
    module = import_file(path)
    stem = Path(path).stem
    if name is not None:
        obj = _getattr_dotted(module, name, path)
        model, how = _build(obj, name, path, kwargs)
        short = stem if name in FACTORY_NAMES + (INSTANCE_NAME,) else name.rsplit(".", 1)[-1]
        return LoadedModel(model, short, f"{how} of {path}", module.__name__, _random(obj, kwargs, model))

    for fname in FACTORY_NAMES:
        fn = module.__dict__.get(fname)
        if callable(fn):
            model, how = _build(fn, fname, path, kwargs)
            return LoadedModel(model, stem, f"{how} of {path}", module.__name__, _random(fn, kwargs, model))
    inst = module.__dict__.get(INSTANCE_NAME)
    if isinstance(inst, nn.Module) and not kwargs:
        return LoadedModel(inst, stem, f"module-level `{INSTANCE_NAME}` ({type(inst).__name__}) of {path}", module.__name__)

    classes = _module_classes(module)
    if not classes:
        found = _found_summary(module)
        raise SpecError(
            f"no model found in {path}: expected a {'/'.join(f + '()' for f in FACTORY_NAMES)} function, "
            f"a module-level `{INSTANCE_NAME}` nn.Module instance, or an nn.Module subclass defined there; "
            f"found {found}. Hint: add `def build_model(): return MyNet()` to the file, or name one with {path}:NAME."
        )
    buildable = [c for c in classes if _fits(c, kwargs)]
    if len(buildable) < len(classes):
        # A part that builds alone (a block with default arguments, a shuffle) is not the model
        # when the file also holds models that need arguments: keep those with a conv.
        buildable = [c for c in buildable if _has_conv(c, kwargs)]
    if not buildable:
        if kwargs and len(classes) == 1:
            _build(classes[0], classes[0].__name__, path, kwargs)  # says which argument does not fit
        raise SpecError(_needs_arguments_text(module, classes, path, kwargs))
    if len(buildable) > 1:
        buildable = _top_level(buildable, path, kwargs)
    if len(buildable) > 1:
        names = ", ".join(c.__name__ for c in buildable)
        raise SpecError(
            f"more than one model in {path}: {names} all build {'with ' + _args_text(kwargs) if kwargs else 'without arguments'}. "
            f"Hint: name one, e.g. {path}:{buildable[0].__name__}, or add a build_model() function."
        )
    cls = buildable[0]
    model, how = _build(cls, cls.__name__, path, kwargs)
    return LoadedModel(model, stem, f"{how} of {path}", module.__name__, _random(cls, kwargs, model))


def _random(build: Any, kwargs: dict, model: nn.Module) -> bool:
    return not isinstance(build, nn.Module) and draws_its_weights(build, kwargs, model)


def _needs_arguments_text(module: ModuleType, classes: list, path: str, kwargs: dict) -> str:
    """What to say when no class of the file builds: which arguments each needs, the factory
    functions that would build a model instead, and how to pass arguments."""
    needs = ", ".join(f"{c.__name__}({_missing(c, kwargs) or _signature_text(c)})" for c in classes if not _fits(c, kwargs))
    factories = [
        k for k, v in module.__dict__.items()
        if inspect.isfunction(v) and v.__module__ == module.__name__ and not k.startswith(("_", "test")) and _missing(v, {}) is None
    ]
    given = f" with {_args_text(kwargs)}" if kwargs else ""
    head = (f"{classes[0].__name__}() in {path} needs arguments ({needs.split('(', 1)[1][:-1]})" if len(classes) == 1
            else f"every nn.Module subclass in {path} needs arguments ({needs})")
    if factories:
        return (
            f"{head}{given}: expected a model that builds. The file has functions that take no arguments: "
            f"{', '.join(f + '()' for f in factories[:6])}{', ...' if len(factories) > 6 else ''}. "
            f"Hint: name one, e.g. {path}:{factories[0]}, or pass arguments with --model-arg KEY=VALUE."
        )
    cls = classes[0] if len(classes) == 1 else classes[-1]
    example = (_missing(cls, kwargs) or "arg").split(",")[0].strip()
    return (
        f"{head}{given}: expected a model that builds. Hint: pass them with --model-arg (repeatable; values are "
        f"Python literals, else text), e.g. {path}:{cls.__name__} --model-arg {example}=VALUE."
    )


def _getattr_dotted(module: ModuleType, name: str, path: str) -> Any:
    obj: Any = module
    for i, part in enumerate(name.split(".")):
        if not hasattr(obj, part):
            prefix = ".".join(name.split(".")[:i])
            if i == 0:
                avail = _candidates(module)
                close = difflib.get_close_matches(part, avail, n=1)
                hint = f" Did you mean {path}:{close[0]}?" if close else ""
                raise SpecError(
                    f"{path} has no '{name}': expected a class, factory function or nn.Module instance; "
                    f"found {', '.join(avail) if avail else 'none'}.{hint}"
                )
            raise SpecError(f"{path}:{prefix} has no attribute '{part}'.")
        obj = getattr(obj, part)
    return obj


def _build(obj: Any, name: str, path: str, kwargs: dict) -> tuple[nn.Module, str]:
    """Turn a class, factory or instance into a model; ``how`` describes it. The arguments are
    checked against the signature before the call, so that an error raised while the model
    builds is reported as that, with the line of the file where it happened."""
    if isinstance(obj, nn.Module):
        if kwargs:
            raise SpecError(f"--model-arg {', '.join(kwargs)}: {path}:{name} is an nn.Module instance, built already. Hint: name its class or a factory.")
        return obj, f"`{name}` ({type(obj).__name__})"
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise SpecError(f"{path}:{name} is a class {obj.__name__} that is not an nn.Module: expected an nn.Module subclass, a factory function or an instance.")
    if not callable(obj):
        raise SpecError(f"{path}:{name} is a {type(obj).__name__}: expected an nn.Module class, a factory function or an instance.")
    what = f"class {name}({_args_text(kwargs)})" if isinstance(obj, type) else f"{name}({_args_text(kwargs)})"
    try:
        inspect.signature(obj).bind(**kwargs)
    except TypeError as e:
        missing = _missing(obj, kwargs)
        if missing is not None:
            raise SpecError(
                f"{what} in {path} needs arguments ({missing}): expected a model that builds. Hint: pass them with "
                f"--model-arg (repeatable; values are Python literals, else text), e.g. --model-arg {missing.split(',')[0]}=VALUE."
            ) from None
        raise SpecError(f"{what} in {path} does not take these arguments: {e}; its arguments are ({_signature_text(obj)}).") from None
    except ValueError:  # no signature to check (a builtin): the call tells
        pass
    try:
        model = obj(**kwargs)
    except Exception as e:
        raise LoadError(f"building the model with {what} failed: {describe_exception(e)}{_where(e, Path(path).resolve())}") from e
    if not isinstance(model, nn.Module):
        raise SpecError(f"{what} in {path} returned a {type(model).__name__}: expected an nn.Module.")
    return model, what


def _missing(obj: Callable, kwargs: dict) -> Optional[str]:
    """The required parameters of ``obj`` that ``kwargs`` does not give, as text; None when none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    required = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs
    ]
    return ", ".join(required) if required else None


def _fits(obj: Callable, kwargs: dict) -> bool:
    """Whether ``obj(**kwargs)`` binds to its signature (every required argument given, none unknown)."""
    try:
        inspect.signature(obj).bind(**kwargs)
    except TypeError:
        return False
    except ValueError:
        return not kwargs
    return True


def _signature_text(obj: Callable) -> str:
    try:
        return ", ".join(str(p) for p in inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return "..."


def _args_text(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _has_conv(cls: type, kwargs: dict) -> bool:
    try:
        inst = cls(**kwargs)
    except Exception:
        return False
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in inst.modules())


def _module_classes(module: ModuleType) -> list[type]:
    """nn.Module subclasses defined in that file (not imported into it), in definition order."""
    out = []
    for value in module.__dict__.values():
        if isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == module.__name__:
            if not inspect.isabstract(value):
                out.append(value)
    return out


def _top_level(classes: list[type], path: str, kwargs: dict) -> list[type]:
    """Among classes that all build (with ``kwargs``), the ones no other one uses as a submodule."""
    instances = {}
    for cls in classes:
        try:
            instances[cls] = cls(**kwargs)
        except Exception:
            continue
    if not instances:
        return classes
    used = set()
    for cls, inst in instances.items():
        for sub in inst.modules():
            if sub is not inst and type(sub) in instances:
                used.add(type(sub))
    top = [c for c in instances if c not in used]
    return top or classes


def _candidates(module: ModuleType) -> list[str]:
    out = []
    for key, value in module.__dict__.items():
        if key.startswith("_"):
            continue
        if isinstance(value, nn.Module):
            out.append(key)
        elif isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == module.__name__:
            out.append(key)
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            out.append(key)
    return out


def _found_summary(module: ModuleType) -> str:
    funcs = [k for k, v in module.__dict__.items() if inspect.isfunction(v) and v.__module__ == module.__name__ and not k.startswith("_")]
    if funcs:
        return f"only the functions {', '.join(f + '()' for f in funcs)}"
    return "no functions, classes or instances of nn.Module"


# --------------------------------------------------------------------------- helpers


def _where(e: BaseException, file: Path) -> str:
    """' (file.py, line N)' for the deepest frame of the traceback that is in ``file``."""
    tb = e.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" ({file.name}, line {line})" if line else ""
