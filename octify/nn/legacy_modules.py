"""The classes version 0.1.0 kept in ``octify._modules``, under the names saved files use.

``octify.io`` makes ``octify._modules`` an alias of this module, so a model saved by 0.1.0
(which pickled these classes by that path) loads with the same classes it had.
"""

from .channels import ChannelMerge, ChannelSplit
from .realign import Realign
from .stochastic_depth import SharedStochasticDepth

__all__ = ["ChannelMerge", "ChannelSplit", "Realign", "SharedStochasticDepth"]
