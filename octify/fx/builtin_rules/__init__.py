"""The built-in octave rules, registered on import: one file per family of ops.

- :mod:`.conv`: Conv2d -> OctConv2d and BatchNorm2d -> OctBatchNorm2d, with their weights.
- :mod:`.pointwise`: elementwise ops, dropout, identity, stochastic depth (per branch).
- :mod:`.pooling`: local pooling per branch, global and adaptive pooling.
- :mod:`.arithmetic`: add / sub / mul / div, and concatenation over channels.

Each rule programs against :class:`octify.rules.RuleContext` only.
"""

from . import arithmetic, conv, pointwise, pooling  # noqa: F401  (each registers its rules)
