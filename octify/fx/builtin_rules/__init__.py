"""The built-in octave rules, registered on import: one file per family of ops.

- :mod:`.conv`: Conv2d -> OctConv2d, with its weights.
- :mod:`.norm`: BatchNorm2d -> OctBatchNorm2d, GroupNorm -> OctGroupNorm.
- :mod:`.pointwise`: elementwise ops, dropout, identity, stochastic depth (per branch).
- :mod:`.pooling`: local pooling per branch, global and adaptive pooling.
- :mod:`.resample`: F.interpolate / nn.Upsample, padding, and reading a pair's shape.
- :mod:`.outputs`: the model's output rebuilt in its mapping type.
- :mod:`.arithmetic`: add / sub / mul / div, and concatenation over channels.

Each rule programs against :class:`octify.rules.RuleContext` only.
"""

from . import arithmetic, conv, norm, outputs, pointwise, pooling, resample  # noqa: F401  (each registers its rules)
