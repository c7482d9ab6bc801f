"""What the report counts and how: stated once here, in every JSON report, in ``--help`` and in
the docs (``docs/report.md``); the printed report carries a one-line pointer (:data:`POINTER`).

Free of torch, so that the command line's help can show it before torch is imported.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["CONVENTIONS", "POINTER", "header_text", "INSERTED_PREFIX", "SECOND_CALL_MARK", "is_inserted"]

# Names of the modules octify adds to a converted model: ``octify_<what>_<n>`` for a merge, split or
# pooling it inserts, ``<original name with _>_octify<n>`` for the second call site of a shared module.
INSERTED_PREFIX = "octify_"
SECOND_CALL_MARK = "_octify"


def is_inserted(name: str) -> bool:
    """A module octify added to a converted model (see :data:`INSERTED_PREFIX`).

    >>> is_inserted("octify_merge_3"), is_inserted("layer1_0_relu_octify12"), is_inserted("layer1.0.relu")
    (True, True, False)
    """
    top = name.split(".", 1)[0]
    return top.startswith(INSERTED_PREFIX) or SECOND_CALL_MARK in top

CONVENTIONS: Dict[str, str] = {
    "macs": "multiply-accumulates of conv, linear and matmul ops (the paper's 'FLOPs'); MACs = FLOPs / 2",
    "flops": "as torch.utils.flop_counter.FlopCounterMode counts them: 2 x MACs; bias additions not counted",
    "not_counted": "batch norm, activations, pooling, upsampling, adds, concatenation, copies (element-wise ops)",
    "feature_map_bytes": "bytes of every tensor each leaf module outputs (both branches of an octave pair), summed over calls",
    "params": "counted on the real model, sum(p.numel()); a shared parameter once, at its first layer",
    "counting": "shapes only, on fake tensors (torch._subclasses.FakeTensorMode): no real compute",
    "rows": "leaf modules (octify's octave layers count as leaves) in the order they first ran; '(other)' holds FLOPs outside any leaf module and parameters owned by containers",
}

POINTER = (
    "MACs: multiply-adds of conv, linear, matmul (FLOPs / 2). Maps: layer outputs.\n"
    "How octify counts: octify convert --help, or docs/report.md (How octify counts)."
)


def header_text() -> str:
    c = CONVENTIONS
    return (
        f"MACs: {c['macs']}. FLOPs: {c['flops']}. Not counted: {c['not_counted']}. "
        f"Feature maps: {c['feature_map_bytes']}. Params: {c['params']}. Counting: {c['counting']}."
    )
