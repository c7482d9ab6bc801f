"""ConvertOptions: every option of ``octify.convert``, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from ..utils.choices import CALIBRATION_SPLITS, MEMORY_FORMATS, POLICIES, STRIDE_MODES
from ..utils.validate import check_alpha, check_choice, check_globs, check_int, check_number, check_octave
from .plan import AlphaFor
from .tracer import LeafSpec, split_leaf_specs

__all__ = ["ConvertOptions", "POLICIES", "MEMORY_FORMATS", "STRIDE_MODES"]



@dataclass(frozen=True)
class ConvertOptions:
    """The options of one conversion (see ``octify.convert`` for what each does).

    Built from ``convert``'s keyword arguments; invalid values raise here, before any work, with
    the messages every other entry point (layers, command line) gives for the same value.

    >>> ConvertOptions(alpha=0.25, exclude="layer4.*").exclude
    ('layer4.*',)
    >>> ConvertOptions(policy="fast")
    Traceback (most recent call last):
    ...
    ValueError: policy must be one of 'default', 'latency', 'latency-rules', found 'fast'
    """

    alpha: float = 0.5
    octave: int = 2
    stride_mode: str = "conv"
    min_size: int = 8
    exclude: Tuple[str, ...] = ()
    alpha_for: AlphaFor = None
    leaf_modules: Sequence[LeafSpec] = ()
    rules: Optional[Mapping[Any, Any]] = None
    transfer_weights: bool = True
    verify: bool = True
    inplace: bool = False
    policy: str = "default"
    memory_format: str = "channels_last"
    calibration_split: str = "best"
    latency_budget: Optional[float] = None
    fidelity_budget: Optional[float] = None
    latency_cache: Any = True
    leaf_types: Tuple[type, ...] = field(init=False, repr=False)
    leaf_globs: Tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("alpha", check_alpha(self.alpha, "alpha"))
        check_octave(self.octave, "octave")
        check_choice(self.stride_mode, "stride_mode", STRIDE_MODES)
        check_int(self.min_size, "min_size", 0)
        check_choice(self.policy, "policy", POLICIES)
        check_choice(self.memory_format, "memory_format", MEMORY_FORMATS)
        check_choice(self.calibration_split, "calibration_split", CALIBRATION_SPLITS)
        put("exclude", check_globs(self.exclude, "exclude"))
        if self.latency_budget is not None:
            check_number(self.latency_budget, "latency_budget", 0.0, above=True)
        if self.fidelity_budget is not None:
            check_number(self.fidelity_budget, "fidelity_budget", 0.0)
        if self.latency_budget is not None and self.fidelity_budget is not None:
            raise ValueError("latency_budget and fidelity_budget: give one budget, found both")
        if (self.latency_budget is not None or self.fidelity_budget is not None) and self.policy != "latency":
            raise ValueError(f"a latency or fidelity budget needs policy='latency' (the measured plan), found policy={self.policy!r}")
        if self.policy == "latency" and self.alpha_for is not None:
            raise ValueError("policy='latency' chooses each block's alpha itself; found alpha_for as well. Hint: drop one of them.")
        if not (isinstance(self.latency_cache, (bool, str)) or hasattr(self.latency_cache, "__fspath__")):
            raise TypeError(f"latency_cache must be True (the user cache), False or a directory, found {type(self.latency_cache).__name__}")
        alpha_for = self.alpha_for
        if alpha_for is not None and not (callable(alpha_for) or isinstance(alpha_for, Mapping)):
            raise TypeError(f"alpha_for must be a dict of glob -> alpha or a callable, found {type(alpha_for).__name__}")
        if isinstance(alpha_for, Mapping):
            for pattern, a in alpha_for.items():
                check_alpha(a, f"alpha_for[{pattern!r}]")
        leaf_types, leaf_globs = split_leaf_specs(self.leaf_modules)
        put("leaf_types", leaf_types)
        put("leaf_globs", leaf_globs)
