"""What fine-tuning minimises: a distillation loss for each kind of output the original returns.

KL at a temperature (Hinton et al. 2015) is right for class scores and wrong for everything else:
on an embedding network it pulled the converted model's embeddings away from the original's
(mean cosine 0.72 -> 0.64 over 300 steps, issue 26). So each floating-point output (a Tensor, or
every one of a tuple / dict / ModelOutput / feature pyramid) gets the loss of its kind:

==================  ==========================================================  ===============
kind                how ``loss="auto"`` tells it (first that applies)            loss
==================  ==========================================================  ===============
``embedding``       (N, D) rows of unit length, or a dict key naming features    ``cosine``
``scores``          (N, C) from a Linear layer (a classifier's head), or a      ``kl``
                    dict key ``logits`` / ``scores``
``dense_scores``    (N, C>1, H, W) at the input's spatial size (segmentation),   ``kl`` per pixel
                    unless the maps come at several sizes (a feature pyramid) or
                    C is the input's (an image from an image: denoising)
``embedding``       any other (N, D): pooled features, a projection              ``cosine``
``map``             the rest: feature maps, depth, regressions, sequences        ``mse``
==================  ==========================================================  ===============

``cosine`` is 1 - cos(student, teacher) per sample (the sample flattened), averaged; ``mse`` is the
mean squared error divided by the teacher's variance over the batch, so that outputs of any
magnitude weigh alike (0 when equal, 1 for a student that outputs the teacher's mean). Several
outputs are summed with equal weights (each loss averaged, then the mean over the outputs).
``loss="kl" | "cosine" | "mse"`` applies one loss to every output; a callable
``loss(student_out, teacher_out) -> Tensor`` replaces all of it (it gets the raw outputs).
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten_with_path, keystr

from .data import float_outputs

__all__ = ["OutputLoss", "cosine_loss", "scaled_mse", "kl_loss", "output_kinds", "KIND_LOSS"]

KIND_LOSS = {"scores": "kl", "dense_scores": "kl", "embedding": "cosine", "map": "mse"}
_SCORE_KEYS = ("logits", "scores", "logit")
_FEATURE_KEYS = ("embedding", "embeddings", "features", "feature", "pooler_output", "last_hidden_state", "hidden_states")


def kl_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 KL(softmax(teacher/T) || softmax(student/T)) over dim 1, averaged per sample (and pixel)."""
    t = temperature
    log_p = F.log_softmax(student.float() / t, 1)
    log_q = F.log_softmax(teacher.float() / t, 1)
    return (log_q.exp() * (log_q - log_p)).sum(1).mean() * t * t


def cosine_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over samples of 1 - cos(student, teacher), each sample flattened.

    >>> t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> float(cosine_loss(3 * t, t)), float(cosine_loss(t.flip(1), t))
    (0.0, 1.0)
    """
    s, t = student.float().flatten(1), teacher.float().flatten(1)
    return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()


def scaled_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared error over the teacher's variance (over the batch): scale-free.

    >>> t = torch.tensor([0.0, 2.0, 4.0, 6.0])
    >>> float(scaled_mse(t, t)), float(scaled_mse(torch.full((4,), 3.0), t))
    (0.0, 1.0)
    """
    s, t = student.float(), teacher.float()
    var = t.detach().var(unbiased=False).clamp_min(1e-12)
    return ((s - t) ** 2).mean() / var


def _producers(model: nn.Module, x: Any) -> dict:
    """{id(output tensor): the leaf module that returned it} over one forward of ``model``."""
    seen: dict = {}

    def hook(mod: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, Tensor):
            seen[id(out)] = mod

    hooks = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return {"out": out, "by_id": seen}


def _kind(t: Tensor, key: str, producer: Optional[nn.Module], x: Any) -> str:
    name = key.lower()
    if t.dim() == 2 and t.shape[1] > 1:
        norms = t.detach().float().norm(dim=1)
        if bool(((norms - 1.0).abs() < 1e-3).all()) or any(k in name for k in _FEATURE_KEYS):
            return "embedding"
        if isinstance(producer, nn.Linear) or any(k in name for k in _SCORE_KEYS):
            return "scores"
        return "embedding"
    if t.dim() == 4 and t.shape[1] > 1 and isinstance(x, Tensor) and x.dim() == 4 and tuple(t.shape[2:]) == tuple(x.shape[2:]):
        # As many channels as the input: an image made from an image (denoising, restoration), not class scores.
        return "map" if t.shape[1] == x.shape[1] else "dense_scores"
    if t.dim() == 4 and t.shape[1] > 1 and any(k in name for k in _SCORE_KEYS):
        return "dense_scores"
    return "map"


def output_kinds(model: nn.Module, x: Any) -> List[tuple]:
    """``[(where, kind)]`` for each floating-point output of ``model(x)`` (see the module docstring).

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    >>> output_kinds(net.eval(), torch.randn(2, 3, 8, 8))
    [('output', 'scores')]
    >>> output_kinds(net[:3].eval(), torch.randn(2, 3, 8, 8))
    [('output', 'embedding')]
    """
    found = _producers(model, x)
    leaves, _ = tree_flatten_with_path(found["out"])
    floats = [(keystr(path) or "output", leaf) for path, leaf in leaves if isinstance(leaf, Tensor) and leaf.is_floating_point()]
    # Maps at several resolutions are a feature pyramid, even the level at the input's size.
    pyramid = len({tuple(t.shape[2:]) for _, t in floats if t.dim() == 4}) > 1
    return [
        (key, "map" if pyramid and t.dim() == 4 else _kind(t, key, found["by_id"].get(id(t)), x)) for key, t in floats
    ]


class OutputLoss:
    """The distillation loss of one run, resolved on the original's outputs for its first batch:
    ``loss`` is ``"auto"``, ``"kl"``, ``"cosine"``, ``"mse"`` or a callable (see the module
    docstring); ``temperature`` is KL's."""

    def __init__(self, loss: Any, temperature: float, kinds: Sequence[tuple]) -> None:
        self.custom: Optional[Callable[[Any, Any], Tensor]] = loss if callable(loss) else None
        self.kinds = list(kinds)
        self.losses = [] if self.custom is not None else [KIND_LOSS[k] if loss == "auto" else loss for _, k in self.kinds]
        self.temperature = temperature

    @classmethod
    def for_model(cls, loss: Any, temperature: float, original: nn.Module, x: Any) -> "OutputLoss":
        return cls(loss, temperature, [] if callable(loss) else output_kinds(original, x))

    @property
    def scores(self) -> Optional[bool]:
        """Whether the first output is class scores (per sample or per pixel); None for a custom loss."""
        return None if self.custom is not None else self.kinds[0][1] in ("scores", "dense_scores")

    @property
    def keep_measure(self) -> Optional[str]:
        """How ``keep_best="auto"`` measures this kind of first output (None: as the outputs look)."""
        if self.custom is not None:
            return None
        return {"scores": "agreement_floor", "dense_scores": "agreement_floor", "embedding": "cosine"}.get(self.kinds[0][1], "rel_error")

    def describe(self) -> str:
        """One line for the record and the command line: which loss on which output."""
        if self.custom is not None:
            return f"custom ({getattr(self.custom, '__name__', type(self.custom).__name__)})"
        return "; ".join(f"{name} on {where} ({kind})" for (where, kind), name in zip(self.kinds, self.losses))

    def __call__(self, student_out: Any, teacher_out: Any) -> Tensor:
        if self.custom is not None:
            return self.custom(student_out, teacher_out)
        s_leaves, t_leaves = float_outputs(student_out), float_outputs(teacher_out)
        if len(s_leaves) != len(t_leaves) or len(t_leaves) != len(self.losses):
            raise ValueError(
                f"octify.finetune: the original returns {len(t_leaves)} floating-point outputs and the converted model "
                f"{len(s_leaves)}, expected {len(self.losses)} (as on the first batch)"
            )
        total: Optional[Tensor] = None
        for s, t, name in zip(s_leaves, t_leaves, self.losses):
            if s.shape != t.shape:
                raise ValueError(f"octify.finetune: the converted model gives {tuple(s.shape)}, the original {tuple(t.shape)}")
            if name == "kl":
                part = kl_loss(s, t, self.temperature)
            elif name == "cosine":
                part = cosine_loss(s, t)
            else:
                part = scaled_mse(s, t)
            total = part if total is None else total + part
        assert total is not None
        return total / len(self.losses)
