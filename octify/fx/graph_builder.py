"""The new graph and the new model as the rewrite builds them: nodes evaluated as they are
emitted, modules installed under their names with the training flag they must end with."""

from __future__ import annotations

import itertools
from typing import Any, Dict, Optional

import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ..errors import ConversionError
from ..nn.functional import branch
from ..rules import EmitError
from .shape_prop import run_node
from ..utils.conventions import INSERTED_PREFIX, SECOND_CALL_MARK

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Emits nodes into ``graph`` (each evaluated on fake tensors at once) and installs modules in ``root``."""

    def __init__(self, root: nn.Module, fm: FakeTensorMode, training: Dict[str, bool]) -> None:
        self.graph = fx.Graph()
        self.root = root
        self.fm = fm
        self.modules: Dict[str, nn.Module] = dict(root.named_modules())
        self.new_modules: Dict[str, bool] = {}  # name -> training flag it must end with
        self._training = training
        self._ids = itertools.count()

    # -- nodes -----------------------------------------------------------------------------------
    def emit(self, op: str, target: Any, args: tuple = (), kwargs: Optional[dict] = None) -> fx.Node:
        node = self.graph.create_node(op, target, args, kwargs or {})
        try:
            node.meta["val"] = run_node(self.fm, self.modules, node, self.root)
        except Exception as e:
            self.graph.erase_node(node)
            raise EmitError(f"{type(e).__name__}: {e}") from e
        return node

    def getitem(self, node: fx.Node, i: int) -> fx.Node:
        out = self.emit("call_function", branch, (node, i))
        out.meta["is_wrapped"] = True  # one call when the generated code is traced again
        return out

    def copy(self, node: fx.Node, args: tuple, kwargs: dict) -> fx.Node:
        try:
            new = self.emit(node.op, node.target, args, kwargs)
        except EmitError as e:
            raise ConversionError(
                f"re-emitting `{node.format_node()}` failed: {e}.", hint="keep that part plain with exclude=[...] or leaf_modules=[...].",
                cli_hint="keep that part plain with --exclude GLOB or --leaf GLOB.",
            ) from e
        if node.meta.get("is_wrapped") and getattr(node.target, "__module__", "").startswith("octify."):
            # octify's wrapped functions (shape guards) stay one call when the generated code is
            # traced again (loading a saved model); torch.fx's own (``_assert_is_none``) take
            # care of themselves, and a qualified name there would break later traces.
            new.meta["is_wrapped"] = True
        return new

    def erase(self, *nodes: fx.Node) -> None:
        for node in nodes:
            self.graph.erase_node(node)

    # -- modules ---------------------------------------------------------------------------------
    def set_module(self, name: str, module: nn.Module, like: Optional[str] = None) -> str:
        """Install ``module`` at ``name``; it will keep the training flag of the module ``like``."""
        parent = self.root
        *path, leaf = name.split(".")
        for part in path:
            parent = getattr(parent, part)
        setattr(parent, leaf, module)
        module.train(False)  # fake execution must not touch training-time state; the flag is set at the end
        self.modules[name] = module
        # like="" is the root: helper modules follow the model's own flag.
        self.new_modules[name] = self._training.get(name if like is None else like, self.root.training)
        return name

    def install(self, target: str, module: nn.Module) -> str:
        """``module`` in place of the module at ``target`` (a second call site of a shared module
        gets a name of its own)."""
        if target in self.new_modules:
            return self.set_module(f"{target.replace('.', '_')}{SECOND_CALL_MARK}{len(self.new_modules)}", module, like=target)
        return self.set_module(target, module)

    def add_module(self, prefix: str, module: nn.Module) -> str:
        return self.set_module(f"{INSERTED_PREFIX}{prefix}_{next(self._ids)}", module, like="")

    def restore_training_flags(self, out: nn.Module) -> None:
        """The converted GraphModule's flags as the original's: new modules as recorded, and the
        containers torch.fx re-creates on the path to a submodule (plain ``nn.Module``s, which
        start in training mode) as the containers they stand for."""
        for name, m in out.named_modules():
            if type(m) is nn.Module:
                m.training = self._training.get(name, self._training.get("", True))
        for name, flag in self.new_modules.items():
            out.get_submodule(name).train(flag)
