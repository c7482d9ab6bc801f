"""Stage 3, plan: decide, before rewriting, each conv's output-side alpha and why.

The default policy follows the official models (Chen et al., 2019): the stem stays plain, the
conv after it starts the octave, maps smaller than ``min_size`` merge back (alpha_out = 0), a
conv too narrow to split keeps one branch. The input side of every conv follows whatever pair
actually arrives, so only the output side is planned here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.fx as fx
from torch import nn

from ..errors import OptionError
from ..nn._common import conv_out, conv_padding, is_depthwise, low_size, same_padding
from ..nn._resample import octave_axes
from ..nn.functional import rebuild_mapping
from ..nn.partition import low_channels
from .latency import (
    LATENCY_MIN_LOW, LATENCY_MIN_LOW_PER_GROUP, LATENCY_MIN_SAVING, LATENCY_MIN_SIZE, block_of, estimated_saving,
    latency_blocks,
)
from .ops import (
    CONVS, ELEMENTWISE_FUNCTIONS, channel_cuts, concat_offset, equal_channel_parts, is_conv,
    is_transposed_conv, keeps_channel_positions, keeps_channels, mixes_channels,
)

__all__ = ["AlphaFor", "ConvPlan", "plan"]

AlphaFor = Union[Mapping[str, float], Callable[[str, nn.Conv2d, tuple], Optional[float]], None]


@dataclass
class ConvPlan:
    alpha_out: float
    reason: Optional[str] = None  # why alpha_out is 0, or why the conv stays plain
    keep_plain: bool = False  # excluded or stem: an nn.Conv2d whatever arrives
    split_groups: int = 1  # output split per this many groups (to feed a grouped consumer)
    stride_mode: str = "conv"
    low: Optional[tuple[int, ...]] = None  # the output channels that go low (calibration); None: the default split
    cuts: tuple[int, ...] = ()  # channel boundaries its output is sliced at: each range split on its own


def _glob_alpha(patterns: Mapping[str, float], name: str) -> Optional[float]:
    for pattern, a in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return a
    return None


def _grouped_consumer(node: fx.Node, modules: Mapping[str, nn.Module]) -> int:
    """Groups of the first grouped (non-depthwise) conv, or the number of equal parts of the
    first chunk/split over channels, reached through ops that keep every channel where it is (a
    pair crosses them unchanged, so that consumer sees this conv's partition)."""
    frontier, seen = list(node.users), set()
    while frontier:
        user = frontier.pop()
        if user in seen:
            continue
        seen.add(user)
        if user.op != "call_module":
            parts = equal_channel_parts(user)
            if parts > 1:
                return parts
            if user.op == "call_function" and user.target in ELEMENTWISE_FUNCTIONS:
                frontier.extend(user.users)
            continue
        mod = modules.get(user.target)
        if isinstance(mod, CONVS):
            if mod.groups > 1 and not is_depthwise(mod):
                return mod.groups
        elif keeps_channels(mod):
            frontier.extend(user.users)
    return 1


def _consumer_cuts(node: fx.Node, modules: Mapping[str, nn.Module], channels: int) -> tuple[int, ...]:
    """The channel boundaries at which this conv's output is sliced or split into ranges (a
    dual-path block's ``x[:, :k]`` and ``x[:, k:]``, a mixed-kernel split), reached through ops
    that keep every channel where it is (norms, activations, residual sums) and through
    concatenations (the boundaries shifted by where this conv's channels sit there). Each range
    then gets its own share of low channels, so that every range of the pair is a pair."""
    frontier, seen, cuts = [(u, node, 0) for u in node.users], set(), set()
    while frontier:
        user, source, offset = frontier.pop()
        if (user, offset) in seen:
            continue
        seen.add((user, offset))
        shift = concat_offset(user, source)
        if shift is not None:
            frontier.extend((u, user, offset + shift) for u in user.users)
            continue
        if keeps_channel_positions(user, modules):
            frontier.extend((u, user, offset) for u in user.users)
            continue
        if user.args and user.args[0] is source:
            cuts.update(c - offset for c in channel_cuts(user) if 0 < c - offset < channels)
    return tuple(sorted(cuts))


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
    latency_plain = latency_blocks(gm, modules) if policy == "latency-rules" else {}
    last_layers = dense_output_convs(gm, modules)
    # Parameters the forward reads itself (``self.conv.weight``): an OctConv2d has no dense weight.
    read_params = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    after_conv: dict[fx.Node, bool] = {}
    for node in gm.graph.nodes:
        upstream = any(
            after_conv.get(a, False) or is_conv(a, modules) or is_transposed_conv(a, modules) for a in node.all_input_nodes
        )
        after_conv[node] = upstream
        transposed = is_transposed_conv(node, modules)
        if not (transposed or is_conv(node, modules)):
            continue
        conv: nn.Conv2d = modules[node.target]
        name = str(node.target)
        out = tuple(node.meta["val"].shape)
        inp = tuple(node.args[0].meta["val"].shape) if isinstance(node.args[0], fx.Node) else out
        if any(fnmatch.fnmatchcase(name, g) for g in exclude):
            plans[node] = ConvPlan(0.0, "excluded", keep_plain=True)
            continue
        read = sorted(p for p in read_params if p in (f"{name}.weight", f"{name}.bias"))
        if read:
            plans[node] = ConvPlan(0.0, f"the model reads {', '.join(read)} itself", keep_plain=True)
            continue
        if not upstream:
            plans[node] = ConvPlan(0.0, "stem (first conv on the model input)", keep_plain=True)
            continue
        a, reason = alpha, None
        chosen = None
        if alpha_for is not None:
            chosen = alpha_for(name, conv, out) if callable(alpha_for) else _glob_alpha(alpha_for, name)
            if chosen is not None:
                a = float(chosen)
                if not 0.0 <= a <= 1.0:
                    raise OptionError(f"alpha_for gave alpha={chosen!r} for conv '{name}'; expected a number in [0, 1]")
                if a == 0.0:
                    reason = "alpha_for sets alpha 0"
        if chosen is None and node in last_layers and a > 0.0:
            a, reason = 0.0, "its output reaches a model output with no channel-mixing op between (the last layer: full resolution)"
        plans[node] = p = ConvPlan(a, reason)
        if a == 0.0:
            continue
        sizes = out[len(out) - octave_axes(len(out)):]  # the axes the octave resamples (L, or H and W)
        if min(sizes) < min_size:
            p.alpha_out, p.reason = 0.0, f"output {'x'.join(map(str, sizes))} below min_size {min_size}"
            continue
        if transposed:  # what follows concerns forward convs (a transposed layer upsamples both branches)
            continue
        depthwise = is_depthwise(conv)
        if policy == "latency-rules":
            block = block_of(node)
            why = latency_plain.get(block) if block is not None else None
            if why is None and min(sizes) < LATENCY_MIN_SIZE:
                why = f"output {'x'.join(map(str, sizes))} below {LATENCY_MIN_SIZE}"
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
        if policy == "latency-rules" and n_low < (LATENCY_MIN_LOW_PER_GROUP if groups > 1 else LATENCY_MIN_LOW):
            why = f"a low branch of {n_low} channels{' per group' if groups > 1 else ''} in {name}, too thin to pay"
            p.alpha_out, p.reason = 0.0, f"latency policy: {why}"
            block = block_of(node)
            if block is not None:
                latency_plain.setdefault(block, f"block {block} has {why}")
            continue
        if not _keeps_grid(conv, inp, out, octave):
            p.alpha_out, p.reason = 0.0, "its padding does not keep the low branch on the octave grid"
            continue
        if stride_mode == "pool" and len(conv.stride) == 2 and conv.stride != (1, 1):
            pooled = [conv_out(low_size(s, st), k, 1, pd, d) for s, st, k, pd, d in
                      zip(inp[-2:], conv.stride, conv.kernel_size, conv_padding(conv), conv.dilation)]
            p.stride_mode = "pool" if tuple(pooled) == out[-2:] else "conv"
        if groups == 1:
            p.split_groups = _grouped_consumer(node, modules)
            if conv.out_channels % p.split_groups or low_channels(conv.out_channels // p.split_groups, a) == 0:
                p.split_groups = 1
            if p.split_groups == 1:
                p.cuts = _consumer_cuts(node, modules, conv.out_channels)
    if policy == "latency-rules":
        # Whole blocks at a time: a block with one conv the policy keeps plain is kept plain
        # whole, so that no block pays for splitting and merging around it.
        for node, p in plans.items():
            block = block_of(node)
            if p.alpha_out > 0.0 and block in latency_plain:
                p.alpha_out, p.reason = 0.0, f"latency policy: {latency_plain[block]}"
        saving = estimated_saving(gm, modules, {n: p.alpha_out for n, p in plans.items()}, octave)
        if 0.0 < saving < LATENCY_MIN_SAVING:
            why = (
                f"latency policy: the octave layers left would save only {saving:.0%} of the conv "
                f"multiply-adds, too little to pay for their extra paths"
            )
            for p in plans.values():
                if p.alpha_out > 0.0:
                    p.alpha_out, p.reason = 0.0, why
    return plans


def _dense(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and 3 <= val.dim() <= 5 and val.shape[2:].numel() > 1


def dense_output_convs(gm: fx.GraphModule, modules: Mapping[str, nn.Module]) -> set[fx.Node]:
    """Convs whose output reaches a model output as a dense map (more than 1x1) through ops that
    mix no channels (activations, resampling, sums, concatenation...). The paper ends an octave
    network with alpha_out 0: a segmentation head at alpha 0.5 would compute half its classes at
    half resolution, nearest-upsampled into 2x2 blocks."""
    reaches: set[fx.Node] = set()
    for node in reversed(gm.graph.nodes):
        if node.op == "output" or node.target is rebuild_mapping:  # the output, or its mapping rebuilt
            reaches.update(n for n in node.all_input_nodes if _dense(n))
        elif node not in reaches and _dense(node):
            if any(u in reaches and not mixes_channels(u, modules) for u in node.users):
                reaches.add(node)
    return {n for n in reaches if is_conv(n, modules) or is_transposed_conv(n, modules)}


def _keeps_grid(conv: nn.Conv2d, inp: tuple, out: tuple, octave: int) -> bool:
    """Whether the conv maps the low grid of its input onto the low grid of its output."""
    if octave == 1:
        return True
    n = octave_axes(len(out))  # the trailing axes on the octave grid
    pads = conv_padding(conv)
    for size, o, k, s, p, d in zip(inp[-n:], out[-n:], conv.kernel_size[-n:], conv.stride[-n:], pads[-n:], conv.dilation[-n:]):
        if conv_out(low_size(size, octave), k, s, p, d) != low_size(o, octave):
            return False
    if isinstance(conv.padding, str) and conv.padding == "same" and not same_padding(conv.kernel_size, conv.dilation)[1]:
        return False
    return True
