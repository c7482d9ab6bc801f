"""What the pass knows about ops, in one place: which keep each channel where it is, which make
a fresh tensor, which pool, add or concatenate, and how to name an op to a person.

The tracer's shape shortcut, the plan's search for grouped consumers, the built-in rules and
the in-place pass all read these tables; a new op is taught to all of them here.
"""

from __future__ import annotations

import operator
from typing import Mapping

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..nn import OctBatchNorm1d, OctBatchNorm2d, OctBatchNorm3d, OctConv1d, OctConv2d, OctConv3d
from ..nn.functional import branch, single

__all__ = [
    "is_branch_read", "is_single",
    "ELEMENTWISE_MODULES", "ELEMENTWISE_FUNCTIONS", "ELEMENTWISE_METHODS", "NORM_MODULES", "CHANNEL_PRESERVING_MODULES",
    "FRESH_OUTPUT_MODULES", "POOL_FUNCTION_PARAMS", "POOL_MODULE_FUNCTIONS", "ADAPTIVE_POOL_FUNCTIONS", "GLOBAL_POOLS", "RESAMPLE_MODULES", "PAD_MODULES", "INTERPOLATE_PARAMS",
    "SAME_AS_HIGH_ATTRIBUTES", "ARITHMETIC", "CONCAT", "CHANNEL_SPLITS", "CHANNEL_MIXING_FUNCTIONS",
    "CONVS", "OCT_CONVS", "BATCH_NORMS", "channel_split_sizes", "equal_channel_parts", "torch_base", "is_conv", "is_transposed_conv", "mixes_channels", "describe",
]

# Elementwise ops (and dropout): run on each branch alone, the pair's partition unchanged.
ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU, nn.Mish, nn.LeakyReLU,
    nn.ELU, nn.CELU, nn.SELU, nn.Tanh, nn.Hardtanh, nn.Softplus,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
# Some torch functions are aliases of each other (F.relu_ is torch.relu_): dict.fromkeys keeps one.
ELEMENTWISE_FUNCTIONS = tuple(dict.fromkeys((
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid,
    F.sigmoid, F.gelu, F.mish, F.leaky_relu, F.elu, F.selu, F.celu, torch.tanh, F.tanh, F.hardtanh, F.softplus,
    torch.clamp, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
)))
ELEMENTWISE_METHODS = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_min_",
    "contiguous", "hardswish", "neg",
    "to", "float", "half", "bfloat16", "double", "type_as",  # casts: each element on its own too
)

# The convs the conv rule turns into octave convs, by number of spatial axes (octave form beside).
OCT_CONVS = {nn.Conv1d: OctConv1d, nn.Conv2d: OctConv2d, nn.Conv3d: OctConv3d}
CONVS = tuple(OCT_CONVS)
BATCH_NORMS = {nn.BatchNorm1d: OctBatchNorm1d, nn.BatchNorm2d: OctBatchNorm2d, nn.BatchNorm3d: OctBatchNorm3d}

NORM_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, OctBatchNorm1d, OctBatchNorm2d, OctBatchNorm3d)

# Modules whose output has their input's shape and channel order: the tracer fills in their
# shapes without running them (fake-running batch norm is most of the cost of shape
# propagation), and the plan looks through them for the grouped conv a pair will reach.
CHANNEL_PRESERVING_MODULES = NORM_MODULES + ELEMENTWISE_MODULES + (nn.Identity,)
# timm's norm-act layers, by class name (octify does not import timm): a BatchNorm2d subclass
# whose forward also runs dropout and an activation, channel by channel.
NORM_ACT_CLASSES = ("timm.layers.norm_act.BatchNormAct2d",)


def keeps_channels(module: nn.Module | None) -> bool:
    """Whether a module computes output channel k from input channel k alone (norms, activations,
    timm's norm-act layers), so that a pair crosses it with its partition unchanged."""
    return isinstance(module, CHANNEL_PRESERVING_MODULES) or (
        module is not None and f"{type(module).__module__}.{type(module).__qualname__}" in NORM_ACT_CLASSES
    )

# Modules whose every call returns a new tensor that no one else holds: a sum into it may be in place.
FRESH_OUTPUT_MODULES = CONVS + NORM_MODULES + (OctConv1d, OctConv2d, OctConv3d)

# Positional parameter names of the local pooling functions (to set ceil_mode on a call).
POOL_FUNCTION_PARAMS = {
    F.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    torch.max_pool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    F.avg_pool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    F.max_pool1d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    F.avg_pool1d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    F.max_pool3d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    F.avg_pool3d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
}
# Local pooling modules and the function each one calls.
POOL_MODULE_FUNCTIONS = {
    nn.MaxPool1d: F.max_pool1d, nn.MaxPool2d: F.max_pool2d, nn.MaxPool3d: F.max_pool3d,
    nn.AvgPool1d: F.avg_pool1d, nn.AvgPool2d: F.avg_pool2d, nn.AvgPool3d: F.avg_pool3d,
}
LOCAL_POOL_MODULES = tuple(POOL_MODULE_FUNCTIONS)
# Adaptive pooling (global at output size 1) and the function each one calls.
ADAPTIVE_POOL_FUNCTIONS = {
    nn.AdaptiveAvgPool1d: F.adaptive_avg_pool1d, nn.AdaptiveAvgPool2d: F.adaptive_avg_pool2d, nn.AdaptiveAvgPool3d: F.adaptive_avg_pool3d,
    nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d, nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d, nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d,
}
GLOBAL_POOLS = (*ADAPTIVE_POOL_FUNCTIONS, *ADAPTIVE_POOL_FUNCTIONS.values(), torch.mean, "mean")

RESAMPLE_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
PAD_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.CircularPad2d)
INTERPOLATE_PARAMS = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
# Attributes of a pair that are those of its high branch (and of the plain tensor it stands for).
SAME_AS_HIGH_ATTRIBUTES = ("ndim", "dtype", "device", "is_cuda", "layout")

ARITHMETIC = (
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul, operator.truediv,
    operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
)
CONCAT = (torch.cat, torch.concat, torch.concatenate)


CHANNEL_SPLITS = (torch.chunk, torch.split, "chunk", "split")
# Ops whose result depends on how their input is laid out in memory, not only on its values:
# ``view`` fails on a channels-last map a contiguous one would take; ``as_strided`` reads strides.
LAYOUT_READING_METHODS = ("view", "view_as", "as_strided")
LAYOUT_READING_FUNCTIONS = (torch.as_strided,)


def is_branch_read(node: fx.Node) -> bool:
    """Whether ``node`` reads one branch of a pair output: ``branch(y, i)`` (what converted graphs
    emit) or ``y[i]`` (graphs saved by octify 0.1.0, and pairs indexed by torch.fx itself)."""
    return node.op == "call_function" and node.target in (operator.getitem, branch)


def is_single(node: fx.Node) -> bool:
    """Whether ``node`` is ``single(y)``: a one-branch octave output narrowed to a Tensor (``narrow``)."""
    return node.op == "call_function" and node.target is single


def channel_split_sizes(node: fx.Node, channels: int) -> list[int] | None:
    """The channel counts of the parts a ``chunk``/``split`` over dim 1 makes of ``channels``
    channels (as torch computes them), or None when the node is no such split."""
    if node.op not in ("call_function", "call_method") or node.target not in CHANNEL_SPLITS:
        return None
    args, kwargs = node.args, node.kwargs
    name = node.target if isinstance(node.target, str) else node.target.__name__
    how = args[1] if len(args) > 1 else kwargs.get("chunks", kwargs.get("split_size_or_sections", kwargs.get("split_size")))
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if dim not in (1, -3) or isinstance(how, fx.Node) or how is None:
        return None
    if name == "chunk":
        each = -(-channels // how)
        return [min(each, channels - s) for s in range(0, channels, each)]
    if isinstance(how, int):
        return [min(how, channels - s) for s in range(0, channels, how)]
    return list(how)


def equal_channel_parts(node: fx.Node) -> int:
    """How many equal parts a chunk/split over channels makes (1: none, or unequal parts)."""
    val = node.args[0].meta.get("val") if node.args and isinstance(node.args[0], fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() != 4:
        return 1
    sizes = channel_split_sizes(node, val.shape[1])
    return len(sizes) if sizes and len(set(sizes)) == 1 else 1


# Ops that turn a map into a vector per sample: a classifier's head (``pool -> flatten -> linear``).
FLATTENS = (torch.flatten, torch.reshape, torch.squeeze, "flatten", "view", "reshape", "squeeze")


def flattens_to_vectors(node: fx.Node) -> bool:
    """Whether ``node`` flattens a map to (N, features): the merge in front of it is expected (a
    classifier's head) and costs the copy of a small map, so the pass records it without a warning."""
    val = node.meta.get("val")
    return node.op in ("call_function", "call_method") and node.target in FLATTENS and isinstance(val, torch.Tensor) and val.dim() <= 2


def channel_cuts(node: fx.Node) -> list[int]:
    """Where ``node`` cuts the channels of its first input into ranges: the inner boundaries of a
    chunk/split over dim 1 or of a channel slice ``x[:, a:b]``; [] for anything else."""
    val = node.args[0].meta.get("val") if node.args and isinstance(node.args[0], fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() < 3:
        return []
    channels = val.shape[1]
    sizes = channel_split_sizes(node, channels)
    if sizes is not None:
        bounds, start = [], 0
        for size in sizes[:-1]:
            start += size
            bounds.append(start)
        return bounds
    if node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], tuple) and len(node.args[1]) >= 2:
        first, channel = node.args[1][0], node.args[1][1]
        if first == slice(None) and isinstance(channel, slice) and channel.step in (None, 1):
            if not any(isinstance(v, fx.Node) for v in (channel.start, channel.stop)):
                start, end, _ = channel.indices(channels)
                return [b for b in (start, end) if 0 < b < channels]
    return []


def keeps_channel_positions(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """Whether ``node``'s output channel k is made from channel k of its inputs (per-channel
    modules, elementwise functions and methods, add/sub/mul/div): a boundary between channel
    ranges after it is one before it too."""
    if node.op == "call_module":
        return keeps_channels(modules.get(node.target))
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS or node.target in ARITHMETIC
    return node.op == "call_method" and (node.target in ELEMENTWISE_METHODS or node.target in ARITHMETIC)


def concat_offset(node: fx.Node, source: fx.Node) -> int | None:
    """Where ``source``'s channels start in a ``torch.cat`` over channels, or None when ``node``
    is no such concatenation (or ``source`` is not one of its parts, or a size is unknown)."""
    if node.op != "call_function" or node.target not in CONCAT or not node.args:
        return None
    tensors = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not isinstance(tensors, (list, tuple)) or dim not in (1, -3):
        return None
    offset = 0
    for t in tensors:
        val = t.meta.get("val") if isinstance(t, fx.Node) else None
        if not isinstance(val, torch.Tensor) or val.dim() < 2:
            return None
        if t is source:
            return offset
        offset += val.shape[1]
    return None


def torch_base(module: nn.Module) -> type | None:
    """The torch.nn class a module behaves as: its own class for torch.nn's, or the torch.nn base
    class of a subclass that keeps that base's forward (HF's ``EfficientNetDepthwiseConv2d`` only
    changes ``__init__``); None for a subclass with a forward of its own (timm's ``Conv2dSame``)."""
    cls = type(module)
    base = next((c for c in cls.__mro__ if c.__module__.startswith("torch.nn.modules")), None)
    if base is None or base is nn.Module:
        return None
    same = all(getattr(cls, name) is getattr(base, name) for name in ("forward", "_conv_forward") if hasattr(base, name))
    return base if same else None


def is_conv(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """A call of a Conv1d / Conv2d / Conv3d of the traced model that the conv rule converts: the
    torch.nn class, or a subclass with its forward (one with its own forward is kept whole and plain)."""
    if node.op != "call_module":
        return False
    mod = modules.get(node.target)
    return isinstance(mod, CONVS) and (type(mod) in CONVS or torch_base(mod) in CONVS)


# Ops that combine channels: past one of them an output no longer shows a conv's low branch.
CHANNEL_MIXING_FUNCTIONS = (
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose2d, torch.matmul, torch.mm, torch.bmm, torch.einsum,
    operator.matmul,
)


def is_transposed_conv(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """A call of a ConvTranspose2d (or a subclass with its forward)."""
    if node.op != "call_module":
        return False
    mod = modules.get(node.target)
    return isinstance(mod, nn.ConvTranspose2d) and (type(mod) is nn.ConvTranspose2d or torch_base(mod) is nn.ConvTranspose2d)


def mixes_channels(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    """A conv or linear layer, or a matrix product: each output channel mixes input channels."""
    if node.op == "call_module":
        return isinstance(modules.get(node.target), (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear))
    if node.op == "call_function":
        return node.target in CHANNEL_MIXING_FUNCTIONS
    return node.op == "call_method" and node.target in ("matmul", "mm", "bmm")


def describe(node: fx.Node, modules: Mapping[str, nn.Module]) -> str:
    """The op of a node, as a person names it (module type, function or method)."""
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_method":
        return f".{node.target}()"
    target = node.target
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", str(target))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    return f"torch.{name}" if mod.startswith("torch") else name
