"""The conversion pass, one file per stage (run in this order by :func:`octify.convert`).

============== =====================================================================
``options``    :class:`ConvertOptions`: every option, validated before any work
``tracer``     1. the torch.fx graph (octify's layers, leaf and rule-keyed modules whole)
``shape_prop`` 2. each node's value on fake tensors, in ``node.meta["val"]``
``plan``       3. each conv's output alpha and why (``latency``: the latency policy)
``rewrite``    4. the graph re-emitted with (high, low) pairs; ``context`` is what rules see
               (built on ``graph_builder`` and ``recorder``), ``builtin_rules`` the rules,
               ``ops`` the op tables they share
``fuse``       5. conv -> batch norm pairs run as one conv in inference
``inplace``    6. residual sums written in place
``verify``     8. the converted model's outputs have the original's structure
``fold``       after the pass, on request: ``octify.fold_bn``
============== =====================================================================

(Stage 7, the channels-last layout, is one line of ``octify.convert``.)
"""

from .options import ConvertOptions

__all__ = ["ConvertOptions"]
