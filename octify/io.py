"""Save a converted model whole, and load it back.

``octify.save(model, path)`` writes the model with ``torch.save`` (the whole module, not only its
state_dict: the converted network's structure is not in any source file). The file is a regular
PyTorch file; load it with either of

    >>> import octify
    >>> model = octify.load("resnet50_oct.pt")                        # doctest: +SKIP

    >>> import torch, octify   # octify must be importable: the file refers to octify.nn layers
    >>> model = torch.load("resnet50_oct.pt", weights_only=False)     # doctest: +SKIP

Both give back a module with the same weights, buffers and train/eval mode, whose outputs are
identical to the saved one's; for a model returned by ``octify.convert`` the conversion record
comes back too (``octify.record_of(model)``). A torch.fx GraphModule is stored as its generated
Python code, which is traced again on load.

Loading unpickles Python objects: only load files you trust (``weights_only=False``). Classes
of your own that the model keeps as submodules must be importable where the file is loaded,
from the same module name as when it was saved.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

__all__ = ["save", "load"]

PathLike = Union[str, "os.PathLike[str]"]

# Where version 0.1.0 kept classes and functions that saved files refer to by module path
# (the pass's inserted modules, the fused conv -> batch norm call in generated code). Each old
# path is an alias of the module that holds them now, so that those files load unchanged.
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
    """Unpickling hook: torch.fx's own reconstruction, then what it drops put back: the
    GraphModule's ``meta`` (the conversion record lives there) and its class name (``OctResNet``,
    which messages and reports call the model by). Files saved without a class name load as before."""
    gm = reduce_fn(*reduce_args)
    if isinstance(getattr(gm, "meta", None), dict):
        gm.meta.update(meta)
    if class_name and type(gm) is not torch.fx.GraphModule:  # each GraphModule has a class of its own
        type(gm).__name__ = class_name
    return gm


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


class _Pickler(pickle.Pickler):
    """Pickles GraphModules through ``_rebuild_graph_module`` so that their meta survives."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.fx.GraphModule) and getattr(obj, "meta", None):
            reduced = obj.__reduce__()
            if isinstance(reduced, tuple) and len(reduced) == 2:
                meta = {k: v for k, v in obj.meta.items() if _picklable(v)}
                return _rebuild_graph_module, (reduced[0], reduced[1], meta, type(obj).__name__)
        return NotImplemented


_pickle_module = types.SimpleNamespace(__name__="octify.io._pickle", Pickler=_Pickler)


def save(model: nn.Module, path: PathLike) -> Path:
    """Write ``model`` whole to ``path`` (atomically: a failed save leaves no partial file).

    Returns the path written. Raises ``TypeError`` for a non-module and ``OSError`` when the
    path cannot be written.

    >>> import torch, octify, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    >>> path = octify.save(net, os.path.join(tempfile.mkdtemp(), "net.pt"))
    >>> x = torch.randn(1, 3, 8, 8)
    >>> torch.equal(octify.load(path)(x), net(x))
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"octify.save: expected an nn.Module, found {type(model).__name__}.")
    target = Path(os.fspath(path))
    if target.is_dir():
        raise IsADirectoryError(21, "is a directory", str(target))
    parent = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(model, f, pickle_module=_pickle_module)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # mkstemp creates 0600 files; give the saved model the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(target, 0o666 & ~umask)
    except OSError:  # pragma: no cover
        pass
    return target


def load(path: PathLike, map_location: Optional[Any] = None) -> nn.Module:
    """Load a model written by :func:`save` (or by ``torch.save(model, path)``).

    Unpickles with ``weights_only=False``: load only files you trust. ``map_location`` is passed
    to ``torch.load`` (e.g. ``"cpu"``). Raises ``TypeError`` when the file holds something other
    than a module (a state_dict, say).
    """
    obj = torch.load(os.fspath(path), map_location=map_location, weights_only=False)
    if not isinstance(obj, nn.Module):
        what = type(obj).__name__
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            what = "state_dict (a dict of tensors)"
        elif isinstance(obj, dict):
            what = f"dict with keys {', '.join(map(str, list(obj)[:5]))}{', ...' if len(obj) > 5 else ''}"
        raise TypeError(
            f"{os.fspath(path)} holds a {what}: expected a whole model saved with octify.save(model, path). "
            f"For a state_dict, build the model and call model.load_state_dict(torch.load(path))."
        )
    return obj
