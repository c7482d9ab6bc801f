"""Plan: decide, before rewriting, each conv's output-side alpha and why.

The default policy follows the official models (Chen et al., 2019): the stem stays plain, the
conv after it starts the octave, maps smaller than ``min_size`` merge back (alpha_out = 0), a
conv too narrow to split keeps one branch. The input side of every conv follows whatever pair
actually arrives, so only the output side is planned here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.fx as fx
from torch import nn

from .nn._resample import low_size
from .nn.octconv import _conv_out
from .nn.partition import low_channels
from .report.theory import octave_macs_ratio

AlphaFor = Union[Mapping[str, float], Callable[[str, nn.Conv2d, tuple], Optional[float]], None]


@dataclass
class ConvPlan:
    alpha_out: float
    reason: Optional[str] = None  # why alpha_out is 0, or why the conv stays plain
    keep_plain: bool = False  # excluded or stem: an nn.Conv2d whatever arrives
    split_groups: int = 1  # output split per this many groups (to feed a grouped consumer)
    stride_mode: str = "conv"


# Ops that hand a pair straight to their single consumer, so a grouped conv behind them still
# sees the partition of the conv in front.
_TRANSPARENT_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.Dropout, nn.Identity)


def _is_conv(node: fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules.get(node.target), nn.Conv2d)


def _glob_alpha(patterns: Mapping[str, float], name: str) -> Optional[float]:
    for pattern, a in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return a
    return None


def _grouped_consumer(node: fx.Node, modules: Mapping[str, nn.Module]) -> int:
    """Groups of the first grouped (non-depthwise) conv reached through transparent ops."""
    frontier, seen = list(node.users), set()
    while frontier:
        user = frontier.pop()
        if user in seen:
            continue
        seen.add(user)
        if user.op != "call_module":
            if user.op == "call_function" and getattr(user.target, "__name__", "") in ("relu", "relu_", "silu", "gelu"):
                frontier.extend(user.users)
            continue
        mod = modules.get(user.target)
        if isinstance(mod, nn.Conv2d):
            depthwise = mod.groups == mod.in_channels == mod.out_channels
            if mod.groups > 1 and not depthwise:
                return mod.groups
        elif isinstance(mod, _TRANSPARENT_MODULES):
            frontier.extend(user.users)
    return 1


def plan(
    gm: fx.GraphModule,
    *,
    alpha: float,
    octave: int,
    stride_mode: str,
    min_size: int,
    exclude: Sequence[str],
    alpha_for: AlphaFor,
    policy: str = "default",
) -> dict[fx.Node, ConvPlan]:
    modules = dict(gm.named_modules())
    plans: dict[fx.Node, ConvPlan] = {}
    latency_plain = _latency_blocks(gm, modules) if policy == "latency" else {}
    after_conv: dict[fx.Node, bool] = {}
    for node in gm.graph.nodes:
        upstream = any(after_conv.get(a, False) or _is_conv(a, modules) for a in node.all_input_nodes)
        after_conv[node] = upstream
        if not _is_conv(node, modules):
            continue
        conv: nn.Conv2d = modules[node.target]
        name = str(node.target)
        out = tuple(node.meta["val"].shape)
        inp = tuple(node.args[0].meta["val"].shape) if isinstance(node.args[0], fx.Node) else out
        if any(fnmatch.fnmatchcase(name, g) for g in exclude):
            plans[node] = ConvPlan(0.0, "excluded", keep_plain=True)
            continue
        if not upstream:
            plans[node] = ConvPlan(0.0, "stem (first conv on the model input)", keep_plain=True)
            continue
        a, reason = alpha, None
        if alpha_for is not None:
            chosen = alpha_for(name, conv, out) if callable(alpha_for) else _glob_alpha(alpha_for, name)
            if chosen is not None:
                a = float(chosen)
                if not 0.0 <= a <= 1.0:
                    raise ValueError(f"alpha_for gave alpha={chosen!r} for conv '{name}'; expected a number in [0, 1]")
                if a == 0.0:
                    reason = "alpha_for sets alpha 0"
        plans[node] = p = ConvPlan(a, reason)
        if a == 0.0:
            continue
        h, w = out[-2], out[-1]
        if h < min_size or w < min_size:
            p.alpha_out, p.reason = 0.0, f"output {h}x{w} below min_size {min_size}"
            continue
        depthwise = is_depthwise(conv)
        if policy == "latency":
            block = _block_of(node)
            why = latency_plain.get(block) if block is not None else None
            if why is None and min(h, w) < LATENCY_MIN_SIZE:
                why = f"output {h}x{w} below {LATENCY_MIN_SIZE}"
            if why is not None:
                p.alpha_out, p.reason = 0.0, f"latency policy: {why}"
                continue
        groups = 1 if depthwise else conv.groups
        per = conv.out_channels // groups
        n_low = low_channels(per, a)
        if n_low == 0 or n_low == per:
            p.alpha_out = 0.0
            p.reason = f"too narrow to split ({per} channels per group at alpha {a:g})" if n_low == 0 else (
                f"alpha {a:g} leaves no high channel"
            )
            continue
        if policy == "latency" and n_low < (LATENCY_MIN_LOW_PER_GROUP if groups > 1 else LATENCY_MIN_LOW):
            why = f"a low branch of {n_low} channels{' per group' if groups > 1 else ''} in {name}, too thin to pay"
            p.alpha_out, p.reason = 0.0, f"latency policy: {why}"
            block = _block_of(node)
            if block is not None:
                latency_plain.setdefault(block, f"block {block} has {why}")
            continue
        if not _keeps_grid(conv, inp, out, octave):
            p.alpha_out, p.reason = 0.0, "its padding does not keep the low branch on the octave grid"
            continue
        if stride_mode == "pool" and conv.stride != (1, 1):
            pooled = [_conv_out(low_size(s, st), k, 1, pd, d) for s, st, k, pd, d in
                      zip(inp[-2:], conv.stride, conv.kernel_size, _padding(conv), conv.dilation)]
            p.stride_mode = "pool" if tuple(pooled) == out[-2:] else "conv"
        if groups == 1:
            p.split_groups = _grouped_consumer(node, modules)
            if conv.out_channels % p.split_groups or low_channels(conv.out_channels // p.split_groups, a) == 0:
                p.split_groups = 1
    if policy == "latency":
        # Whole blocks at a time: a block with one conv the policy keeps plain is kept plain
        # whole, so that no block pays for splitting and merging around it.
        for node, p in plans.items():
            block = _block_of(node)
            if p.alpha_out > 0.0 and block in latency_plain:
                p.alpha_out, p.reason = 0.0, f"latency policy: {latency_plain[block]}"
        saving = _estimated_saving(gm, modules, plans, octave)
        if 0.0 < saving < LATENCY_MIN_SAVING:
            why = (
                f"latency policy: the octave layers left would save only {saving:.0%} of the conv "
                f"multiply-adds, too little to pay for their extra paths"
            )
            for p in plans.values():
                if p.alpha_out > 0.0:
                    p.alpha_out, p.reason = 0.0, why
    return plans


def _estimated_saving(gm: fx.GraphModule, modules: Mapping[str, nn.Module], plans: Mapping[fx.Node, ConvPlan], octave: int) -> float:
    """The share of the convs' multiply-adds the plan saves, before rewriting: the low share of
    every map is followed through the graph (kept by per-channel and elementwise ops, averaged
    over concatenated channels, 0 past anything else), and each conv costs
    ``octave_macs_ratio(low share in, alpha_out)`` of its plain MACs."""
    low: dict[fx.Node, float] = {}
    total = kept = 0.0
    for node in gm.graph.nodes:
        if node in plans:
            ai = low.get(node.args[0], 0.0) if isinstance(node.args[0], fx.Node) else 0.0
            ao = plans[node].alpha_out
            conv = modules[node.target]
            macs = node.meta["val"].numel() * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
            total += macs
            kept += macs * octave_macs_ratio(ai, ao, octave, depthwise=is_depthwise(conv))
            low[node] = ao
        elif node.op == "call_function" and getattr(node.target, "__name__", "") in ("cat", "concat", "concatenate"):
            parts = [a for a in (node.args[0] if node.args and isinstance(node.args[0], (list, tuple)) else []) if isinstance(a, fx.Node)]
            chans = [a.meta["val"].shape[1] if isinstance(a.meta.get("val"), torch.Tensor) and a.meta["val"].dim() > 1 else 0 for a in parts]
            if sum(chans):
                low[node] = sum(low.get(a, 0.0) * c for a, c in zip(parts, chans)) / sum(chans)
        elif isinstance(node.meta.get("val"), torch.Tensor) and node.meta["val"].dim() == 4:
            shares = [low[a] for a in node.all_input_nodes if a in low]
            if shares:
                low[node] = max(shares)
    return 0.0 if total == 0 else 1.0 - kept / total


# Where an octave conv cannot pay for itself on a CPU (measured with benchmarks/latency.py):
# its paths and resampling cost launches and passes over memory that only big enough convs
# amortise. Depthwise and thin-group convs are memory-bound, so a block holding one is kept
# plain whole: an octave 1x1 conv around a plain depthwise conv would only add splits and merges.
LATENCY_MIN_SIZE = 14  # a 7x7 map's 4x4 low branch is too small for efficient kernels
LATENCY_MIN_GROUP_WIDTH = 16
LATENCY_MIN_LOW = 16  # low-branch channels below which the extra paths cost more than they save
LATENCY_MIN_LOW_PER_GROUP = 8
LATENCY_MIN_SAVING = 0.10  # below this share of the conv MACs saved, the whole model stays plain


def _block_of(node: fx.Node) -> Optional[str]:
    """The innermost enclosing module that is not a container: the conv's block (None at top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    block = None
    # The traced GraphModule rebuilds containers as plain Modules: the types come from the stack.
    for path, mtype in list(stack.values())[:-1]:
        if isinstance(mtype, type) and not issubclass(mtype, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            block = path
    return block


def _latency_blocks(gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> dict[str, str]:
    """Blocks the latency policy keeps plain, with the reason."""
    plain: dict[str, str] = {}
    for node in gm.graph.nodes:
        if not _is_conv(node, modules):
            continue
        conv = modules[node.target]
        block = _block_of(node)
        if block is None or block in plain:
            continue
        if is_depthwise(conv):
            plain[block] = f"block {block} has a depthwise conv ({node.target}), memory-bound"
        elif conv.groups > 1 and conv.out_channels // conv.groups < LATENCY_MIN_GROUP_WIDTH:
            plain[block] = f"block {block} has a grouped conv of {conv.out_channels // conv.groups} channels per group"
    return plain


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return (0, 0)
        return tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))  # type: ignore[return-value]
    return conv.padding  # type: ignore[return-value]


def _keeps_grid(conv: nn.Conv2d, inp: tuple, out: tuple, octave: int) -> bool:
    """Whether the conv maps the low grid of its input onto the low grid of its output."""
    if octave == 1:
        return True
    pads = _padding(conv)
    for size, o, k, s, p, d in zip(inp[-2:], out[-2:], conv.kernel_size, conv.stride, pads, conv.dilation):
        if _conv_out(low_size(size, octave), k, s, p, d) != low_size(o, octave):
            return False
    if isinstance(conv.padding, str) and conv.padding == "same" and any(d * (k - 1) % 2 for k, d in zip(conv.kernel_size, conv.dilation)):
        return False
    return True


def is_depthwise(conv: Any) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
