"""The conversion pass, one file per stage (run in this order by :func:`octify.convert`).

============== =====================================================================
``tracer``     1. the torch.fx graph (octify's layers, leaf and rule-keyed modules whole)
``shape_prop`` 2. each node's value on fake tensors, in ``node.meta["val"]``
``plan``       3. each conv's output alpha and why (``latency``: the static latency rules;
               ``measured``: ``policy="latency"``, forms timed per unit by ``measure`` and
               chosen by ``choose``, around the whole pass)
``rewrite``    4. the graph re-emitted with (high, low) pairs; ``context`` is what rules see
               (built on ``graph_builder`` and ``recorder``), ``builtin_rules`` the rules,
               ``ops`` the op tables they share; ``taps`` where each module of the original
               ends in the new graph (for feature distillation)
``inplace``    5. residual sums written in place
``layout``     6. channels-last weights
``verify``     7. the converted model's outputs have the original's structure
``freeze``     after the pass, on request: ``octify.freeze``, the inference form
``fold``       batch norms folded into convs (``octify.fold_bn``; part of ``freeze``)
``fuse``       ``conv_bn``, which models saved by octify 0.1.0 call
============== =====================================================================

``stages`` holds the stages as a list (``STAGES``), which ``octify.convert`` runs. The options
of a conversion, validated before any work, are :class:`octify.ConvertOptions` (``octify/options.py``).
"""
