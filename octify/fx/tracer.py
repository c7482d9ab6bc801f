"""Stage 1, trace: a leaf-module-aware torch.fx tracer that follows the example inputs.

octify's own layers, the user's leaf modules (types or qualified-name globs) and module types
that have an octave rule are traced whole, as one ``call_module`` node each.

Given the example inputs, every proxy carries the fake value of its node (as meta-tracing
tracers do), so Python control flow on shapes resolves on the example inputs' shapes:
``if h % 32:``, ``b, c, h, w = x.shape``, ``int(...)``, ``len(...)``, iterating the tuple of
``chunk``/``split``. Each decision is recorded (:class:`~octify.record.Specialization`, with the
user's file and line) and checked at run time by a ``shape_guard`` node, so the converted model
refuses an input that would take another branch. Parameters of ``forward`` that the example
inputs do not give keep their defaults.
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import linecache
import operator
import os
import traceback
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx import _symbolic_trace
from torch.fx.proxy import Attribute, TraceError

from ..errors import ConversionError, OptionTypeError
from ..nn.functional import assert_none, rebuild_mapping, shape_guard, to_int
from ..record import Specialization
from ..rules import class_name
from .ops import torch_base
from .shape_prop import call_module, eval_mode, fakeify, run_node

__all__ = ["LeafSpec", "Tracer", "is_user_leaf", "split_leaf_specs", "trace", "placeholder_values", "SPECIALIZED"]

SPECIALIZED = "octify_specialized"  # gm.meta key: the Specializations the trace made

LeafSpec = Union[type, str]
_MISSING = object()
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (torch, __import__("octify")) if m.__file__
)


@contextlib.contextmanager
def _unpatched() -> Iterator[None]:
    """nn.Module's own __call__ and __getattr__, which torch.fx swaps for recording wrappers while
    it traces: evaluating a module on fake values must run it, not record it again."""
    call, getattr_ = nn.Module.__call__, nn.Module.__getattr__
    nn.Module.__call__ = _symbolic_trace._orig_module_call  # type: ignore[method-assign]
    nn.Module.__getattr__ = _symbolic_trace._orig_module_getattr  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.__call__ = call  # type: ignore[method-assign]
        nn.Module.__getattr__ = getattr_  # type: ignore[method-assign]


def _user_frame(tb: Any = None) -> Tuple[str, str]:
    """(``file:line``, source line) of the innermost frame outside torch and octify: the user's code."""
    frames = traceback.extract_tb(tb) if tb is not None else traceback.extract_stack()
    for frame in reversed(frames):
        path = os.path.abspath(frame.filename)
        if not path.startswith(_LIBRARY_DIRS) and "<" not in frame.filename:
            code = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
            return f"{os.path.basename(frame.filename)}:{frame.lineno}", code
    return "?", ""


class ValueProxy(fx.Proxy):
    """A proxy whose node has a fake value: its length and integer value are those of the example."""

    def __getattr__(self, k: str) -> "ValueAttribute":
        return ValueAttribute(self, k)

    def _value(self) -> Any:
        return self.node.meta.get("val", _MISSING)

    def __len__(self) -> int:
        val = self._value()
        if isinstance(val, (tuple, list, dict, torch.Size)):
            return len(val)  # the structure of the graph, not a shape
        if isinstance(val, torch.Tensor) and val.dim() > 0:
            return self.tracer.specialize_int(self.size(0), int(val.shape[0]))  # type: ignore[attr-defined]
        raise TraceError(f"len() of a traced value that is not a sequence ({type(val).__name__})")

    def __index__(self) -> int:
        val = self._value()
        if isinstance(val, int) and not isinstance(val, bool):
            return self.tracer.specialize_int(self, val)  # type: ignore[attr-defined]
        raise TraceError(f"a traced value used as an index is a {type(val).__name__}, not an integer from a shape")

    def __int__(self) -> int:
        val = self._value()
        if isinstance(val, float):  # int(h / 2): the conversion is part of what the guard checks
            as_int = self.tracer.create_proxy("call_function", to_int, (self,), {})
            as_int.node.meta["is_wrapped"] = True
            return self.tracer.specialize_int(as_int, int(val))  # type: ignore[attr-defined]
        return self.__index__()


class ValueAttribute(Attribute, ValueProxy):
    """``proxy.attr`` (``x.shape``) with the fake value of its node."""


class Tracer(fx.Tracer):
    """torch.fx's tracer plus user leaf modules (types or qualified-name globs), rule-keyed types
    and, given placeholder values, proxies that carry fake values (see the module docstring)."""

    def __init__(
        self,
        leaf_types: tuple[type, ...],
        leaf_globs: tuple[str, ...],
        fm: Optional[FakeTensorMode] = None,
        values: Optional[Dict[str, Any]] = None,
        leaf_classes: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._leaf_types = leaf_types
        self._leaf_globs = leaf_globs
        self._leaf_classes = frozenset(leaf_classes)  # module classes with a rule keyed by name
        self.fm = fm
        self._values = values  # placeholder name -> fake value; None: plain symbolic tracing
        self.specialized: List[Specialization] = []
        self._root: Optional[nn.Module] = None
        self._modules: Dict[str, nn.Module] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # octify's own layers branch on their input's type: trace them whole.
        if type(m).__module__.startswith("octify.nn."):
            return True
        if is_user_leaf(m, qualname, self._leaf_types, self._leaf_globs) or class_name(type(m)) in self._leaf_classes:
            return True
        if torch_base(m) is not None:  # a subclass that keeps its torch.nn base's forward
            return not isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        if isinstance(m, nn.modules.conv._ConvNd):
            return True  # a conv subclass with a forward of its own: kept whole, recorded plain
        return super().is_leaf_module(m, qualname)

    def trace(self, root: Any, concrete_args: Optional[Dict[str, Any]] = None) -> fx.Graph:
        if isinstance(root, nn.Module):
            self._root = root
            self._modules = dict(root.named_modules())
        return super().trace(root, concrete_args)

    # -- values ----------------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ValueProxy(node, self) if self._values is not None else fx.Proxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **kw: Any) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
        if self._values is not None:
            self._evaluate(proxy.node)
        return proxy

    def _evaluate(self, node: fx.Node) -> None:
        """The node's fake value; none where it cannot be had (shape propagation reports why)."""
        try:
            with _unpatched():
                val = self._value_of(node)
        except Exception:
            return
        if val is not _MISSING:
            node.meta["val"] = val

    def _value_of(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            name = str(node.target)
            if name in self._values:
                return self._values[name]
            if node.args:
                return node.args[0]
            return {} if name.startswith("**") else () if name.startswith("*") else _MISSING
        if node.op == "call_module":
            mod = self._modules[node.target]
            args = fx.node.map_arg(node.args, lambda n: n.meta["val"])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: n.meta["val"])
            with eval_mode(mod):  # the trace follows the model's mode; fake runs touch no state
                return call_module(self.fm, mod, args, kwargs)
        if node.op == "output":
            return _MISSING
        return run_node(self.fm, self._modules, node, self._root)

    # -- control flow on values ------------------------------------------------------------------
    def _guard(self, condition: fx.Proxy, expected: bool, value: Any) -> None:
        where, code = _user_frame()
        self.specialized.append(Specialization(where, code, value))
        guard = self.create_proxy("call_function", shape_guard, (condition, expected, f"{where}: {code}"), {})
        guard.node.meta["is_wrapped"] = True  # re-tracing the generated code keeps it one call

    def to_bool(self, obj: fx.Proxy) -> bool:
        val = obj.node.meta.get("val", _MISSING) if self._values is not None else _MISSING
        if val is _MISSING or isinstance(val, torch.Tensor):
            where, code = _user_frame()
            raise TraceError(
                f"control flow on a tensor's values at {where} (`{code}`): the example inputs cannot decide it"
            )
        result = bool(val)
        self._guard(obj, result, result)
        return result

    def specialize_int(self, obj: fx.Proxy, value: int) -> int:
        equal = self.create_proxy("call_function", operator.eq, (obj, value), {})
        self._guard(equal, True, value)
        return value

    def iter(self, obj: fx.Proxy) -> Iterator:
        val = obj.node.meta.get("val", _MISSING) if self._values is not None else _MISSING
        if isinstance(val, (tuple, list, torch.Size)):
            return iter([obj[i] for i in range(len(val))])
        return super().iter(obj)

    def create_arg(self, a: Any) -> Any:
        # A dict subclass (OrderedDict, HF's ModelOutput) would reach the graph as a plain dict:
        # a rebuild_mapping node gives the converted model the original's output type back.
        if isinstance(a, dict) and type(a) is not dict and all(isinstance(k, str) for k in a):
            cls = type(a)
            plain = super().create_arg(dict(a))
            node = self.create_node("call_function", rebuild_mapping, (f"{cls.__module__}:{cls.__qualname__}", plain), {})
            node.meta["is_wrapped"] = True
            return node
        return super().create_arg(a)

    def keys(self, obj: fx.Proxy) -> Any:
        val = obj.node.meta.get("val", _MISSING) if self._values is not None else _MISSING
        if isinstance(val, dict):
            return list(val.keys())
        return super().keys(obj)


def is_user_leaf(m: nn.Module, qualname: str, leaf_types: tuple[type, ...], leaf_globs: tuple[str, ...]) -> bool:
    """Whether the user asked for ``m`` (at ``qualname``) to be kept whole."""
    return isinstance(m, leaf_types) or any(fnmatch.fnmatchcase(qualname, g) for g in leaf_globs)


def split_leaf_specs(leaf_modules: Sequence[LeafSpec]) -> tuple[tuple[type, ...], tuple[str, ...]]:
    types, globs = [], []
    for spec in leaf_modules:
        if isinstance(spec, type) and issubclass(spec, nn.Module):
            types.append(spec)
        elif isinstance(spec, str):
            globs.append(spec)
        else:
            raise OptionTypeError(
                f"leaf_modules entries must be nn.Module subclasses or qualified-name globs, found {spec!r}"
            )
    return tuple(types), tuple(globs)


def _bind(model: nn.Module, args: tuple, kwargs: dict) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(placeholder values by name, concrete_args): parameters the inputs give are traced;
    parameters with defaults that they do not give keep their defaults."""
    sig = inspect.signature(inspect.unwrap(type(model).forward))  # see _undecorated
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])  # without self
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError as e:
        raise ConversionError(
            f"example_inputs do not fit {type(model).__name__}.forward{sig}: {e}.",
            hint="pass a tuple with one tensor per positional input of forward(), or a dict of keyword inputs."
        ) from None
    values: Dict[str, Any] = {}
    concrete: Dict[str, Any] = {}
    for name, param in sig.parameters.items():
        # *args / **kwargs stay placeholders (empty unless given): a concrete container would
        # make torch.fx generate a pytree-flattening forward.
        if param.kind is param.VAR_POSITIONAL:
            values["*" + name] = tuple(bound.arguments.get(name, ()))
        elif param.kind is param.VAR_KEYWORD:
            values["**" + name] = dict(bound.arguments.get(name, {}))
        elif name in bound.arguments:
            values[name] = bound.arguments[name]
        elif param.default is not param.empty:
            concrete[name] = param.default
    return values, concrete


@contextlib.contextmanager
def _undecorated(model: nn.Module) -> Iterator[None]:
    """A forward wrapped by a decorator (``functools.wraps``: HF's ``can_return_tuple``) is traced
    as the function it wraps: torch.fx names its inputs after the wrapped function's parameters
    but runs the wrapper's ``(*args, **kwargs)``, which mixes them up. The decorator's own work
    (reformatting the outputs) is not part of the converted model. The model's class is swapped
    for the time of the trace only."""
    cls = type(model)
    inner = inspect.unwrap(cls.forward)
    if inner is cls.forward:
        yield
        return
    model.__class__ = type(cls.__name__, (cls,), {"forward": inner, "__module__": cls.__module__})
    try:
        yield
    finally:
        model.__class__ = cls


def trace(
    model: nn.Module,
    leaf_types: tuple[type, ...],
    leaf_globs: tuple[str, ...],
    fm: Optional[FakeTensorMode] = None,
    args: tuple = (),
    kwargs: Optional[Dict[str, Any]] = None,
    leaf_classes: Sequence[str] = (),
) -> fx.GraphModule:
    """Trace ``model``; with ``fm`` and example ``args``/``kwargs``, following their values: then
    every node has its fake value in ``meta["val"]`` and ``gm.meta[SPECIALIZED]`` lists the
    decisions taken on them."""
    values: Optional[Dict[str, Any]] = None
    concrete: Optional[Dict[str, Any]] = None
    if fm is not None:
        values, concrete = _bind(model, fakeify(fm, tuple(args)), fakeify(fm, dict(kwargs or {})))
    tracer = Tracer(leaf_types, leaf_globs, fm, values, leaf_classes)
    try:
        with _undecorated(model):
            graph = tracer.trace(model, concrete or None)
    except ConversionError:
        raise
    except Exception as e:  # torch.fx raises many kinds; each becomes one clear message
        raise _trace_error(model, tracer, e) from e
    for node in graph.nodes:
        if node.op == "call_function" and node.target is _symbolic_trace._assert_is_none:
            node.target = assert_none  # see assert_none
            node.meta["is_wrapped"] = True
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    gm.meta[SPECIALIZED] = list(tracer.specialized)
    # torch.fx re-creates the containers on the path to each submodule as plain nn.Modules, which
    # start in training mode: give them the flags of the containers they stand for.
    originals = dict(model.named_modules())
    for name, m in gm.named_modules():
        if type(m) is nn.Module and name in originals:
            m.training = originals[name].training
    return gm


def placeholder_values(gm: fx.GraphModule) -> list:
    """``gm``'s positional inputs as the example gives them (or the defaults kept), a ``*args``
    placeholder's tuple spread out, as ``gm(*values)`` takes them."""
    values: list = []
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        val = n.meta.get("val", n.args[0] if n.args else None)
        name = str(n.target)
        if name.startswith("**"):
            continue  # keyword inputs: a **kwargs placeholder is filled by keyword only
        if name.startswith("*"):
            values.extend(val)
        else:
            values.append(val)
    return values


def _trace_error(model: nn.Module, tracer: Tracer, e: BaseException) -> ConversionError:
    """The user's file and line, the module it happened in and a hint that works: a module
    type for ``leaf_modules`` (never the model itself), or what to change."""
    stack = [s for s in getattr(tracer, "module_stack", {}).values() if isinstance(s, tuple)]
    path, mtype = stack[-1] if stack else ("", type(model))
    type_name = getattr(mtype, "__name__", str(mtype).rsplit(".", 1)[-1].rstrip("'>"))
    where_module = f" in module '{path}' ({type_name})" if path else ""
    where, code = _user_frame(e.__traceback__)
    at = f" at {where} (`{code}`)" if where != "?" else ""
    if path:
        hint = f"pass leaf_modules=[{type_name}] (its type; or the glob '{path}') to keep it whole; its convs then stay plain."
        cli_hint = f"pass --leaf {type_name} (its type; or --leaf '{path}') to keep it whole; its convs then stay plain."
    else:
        hint = (
            f"this is {type(model).__name__}'s own forward, which leaf_modules cannot keep whole: "
            "make that line depend on shapes only, or convert the submodules that hold the convs."
        )
        cli_hint = (
            f"this is {type(model).__name__}'s own forward, which --leaf cannot keep whole: "
            "make that line depend on shapes only, or convert the submodules that hold the convs."
        )
    return ConversionError(f"torch.fx cannot trace {type(model).__name__}{where_module}{at}: {type(e).__name__}: {e}.", hint, cli_hint)
