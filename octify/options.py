"""The options of octify's two long jobs, as objects: :class:`ConvertOptions` (``octify.convert``)
and :class:`FinetuneOptions` (``octify.finetune``).

Each option's default lives here and only here: ``convert``'s and ``finetune``'s signatures and the
command line's flags read them (``ConvertOptions.alpha``...). Values are validated when an
options object is built, with the messages every other entry point gives for the same value.
Free of torch at import, so that the command line can declare its flags (and answer ``--help``)
before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from .utils.choices import CALIBRATION_SPLITS, FINETUNE_LOSSES, KEEP_BEST, MEMORY_FORMATS, OPTIMIZERS, POLICIES, STRIDE_MODES
from .errors import OptionError, OptionTypeError
from .utils.validate import check_alpha, check_bool, check_choice, check_globs, check_int, check_number, check_octave

__all__ = ["ConvertOptions", "FinetuneOptions"]


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
    octify.errors.OptionError: policy must be one of 'default', 'latency', 'latency-rules', found 'fast'
    """

    alpha: float = 0.5
    octave: int = 2
    stride_mode: str = "conv"
    min_size: int = 8
    exclude: Tuple[str, ...] = ()
    alpha_for: Any = None  # a dict of glob -> alpha, or a callable (name, conv, output shape) -> alpha or None
    leaf_modules: Sequence[Any] = ()  # nn.Module subclasses or qualified-name globs
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
            raise OptionError("latency_budget and fidelity_budget: give one budget, found both")
        if (self.latency_budget is not None or self.fidelity_budget is not None) and self.policy != "latency":
            raise OptionError(f"a latency or fidelity budget needs policy='latency' (the measured plan), found policy={self.policy!r}")
        if self.policy == "latency" and self.alpha_for is not None:
            raise OptionError("policy='latency' chooses each block's alpha itself; found alpha_for as well. Hint: drop one of them.")
        if not (isinstance(self.latency_cache, (bool, str)) or hasattr(self.latency_cache, "__fspath__")):
            raise OptionTypeError(f"latency_cache must be True (the user cache), False or a directory, found {type(self.latency_cache).__name__}")
        alpha_for = self.alpha_for
        if alpha_for is not None and not (callable(alpha_for) or isinstance(alpha_for, Mapping)):
            raise OptionTypeError(f"alpha_for must be a dict of glob -> alpha or a callable, found {type(alpha_for).__name__}")
        if isinstance(alpha_for, Mapping):
            for pattern, a in alpha_for.items():
                check_alpha(a, f"alpha_for[{pattern!r}]")
        from .fx.tracer import split_leaf_specs  # torch: only when options are built, not to declare them

        leaf_types, leaf_globs = split_leaf_specs(self.leaf_modules)
        put("leaf_types", leaf_types)
        put("leaf_globs", leaf_globs)


@dataclass(frozen=True)
class FinetuneOptions:
    """The options of one fine-tuning run (see :func:`finetune`); invalid values raise here.

    >>> FinetuneOptions(steps=100).lr
    0.01
    >>> FinetuneOptions(steps=0)
    Traceback (most recent call last):
    ...
    octify.errors.OptionError: steps must be an integer >= 1, found 0
    """

    steps: int
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: float = 0.05
    temperature: float = 4.0
    label_weight: float = 0.0
    batch_size: int = 64
    seed: int = 0
    checkpoint: Optional[str] = None
    checkpoint_every: int = 0
    resume: bool = True
    sync_bn: bool = True
    keep_best: str = "auto"
    eval_every: int = 0
    holdout: float = 0.1
    loss: Any = "auto"
    features: Any = None
    feature_weight: float = 1.0
    augment: bool = False
    bf16: bool = False

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", 1)
        check_number(self.lr, "lr", 0.0, above=True)
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_number(self.momentum, "momentum", 0.0)
        check_number(self.weight_decay, "weight_decay", 0.0)
        if check_number(self.warmup, "warmup", 0.0) >= 1.0:
            raise OptionError(f"warmup is a fraction of the steps, in [0, 1), found {self.warmup:g}")
        check_number(self.temperature, "temperature", 0.0, above=True)
        check_number(self.label_weight, "label_weight", 0.0)
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.seed, "seed", 0)
        check_int(self.checkpoint_every, "checkpoint_every", 0)
        check_choice(self.keep_best, "keep_best", KEEP_BEST)
        check_int(self.eval_every, "eval_every", 0)
        if not 0.0 <= check_number(self.holdout, "holdout", 0.0) < 1.0:
            raise OptionError(f"holdout is a fraction of the samples, in [0, 1), found {self.holdout:g}")
        if not callable(self.loss):
            check_choice(self.loss, "loss", FINETUNE_LOSSES)
        from .tune.features import check_features  # torch: only when options are built, not to declare them

        object.__setattr__(self, "features", check_features(self.features))
        check_number(self.feature_weight, "feature_weight", 0.0)
        check_bool(self.augment, "augment")
        check_bool(self.bf16, "bf16")

    def evaluations(self) -> int:
        """Steps between two measurements on the held-out data (``eval_every``, or a tenth of the run)."""
        return self.eval_every or max(1, math.ceil(self.steps / 10))
