"""Light augmentation for small sets of images: a random resized crop and a horizontal flip.

Distillation needs inputs, not labels, so every augmented view is a new training example with
its own target (the original's output on that view): with a few hundred images, views keep
the converted model from fitting the original only where the images are. Random resized crop
and flip as in torchvision's ``RandomResizedCrop`` / ``RandomHorizontalFlip``, on batches of
tensors, per sample, drawn from torch's global generator (seeded by ``finetune``'s ``seed`` and
saved in its checkpoints, so that a resumed run draws what an uninterrupted one would). The
crop keeps at least ``AUGMENT_SCALE[0]`` of the area (torchvision's 0.08 suits training from
scratch, too far from the images a distilled model will see).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "AUGMENT_SCALE", "AUGMENT_RATIO"]

AUGMENT_SCALE = (0.35, 1.0)
AUGMENT_RATIO = (3 / 4, 4 / 3)


def _box(h: int, w: int) -> tuple[int, int, int, int]:
    area = h * w
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*AUGMENT_SCALE))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(AUGMENT_RATIO[0]), math.log(AUGMENT_RATIO[1]))))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            return top, left, ch, cw
    return 0, 0, h, w  # as torchvision falls back (its centre crop is the whole image here)


def augment_batch(x: Tensor) -> Tensor:
    """Each sample of an image batch ``(N, C, H, W)`` (or a video batch ``(N, C, T, H, W)``,
    one crop for all its frames) cropped at random, resized back to ``H x W`` and flipped
    left-right with probability 1/2. Other shapes raise.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> y = augment_batch(torch.rand(4, 3, 32, 32))
    >>> tuple(y.shape), bool((y >= 0).all() and (y <= 1).all())
    ((4, 3, 32, 32), True)
    """
    if not x.is_floating_point() or x.dim() not in (4, 5):
        raise ValueError(
            f"octify.finetune: augment=True crops and flips images (N, C, H, W) or videos (N, C, T, H, W) of floats, "
            f"found a {x.dtype} tensor of shape {tuple(x.shape)}. Hint: pass augment=False and augment the data yourself."
        )
    h, w = x.shape[-2:]
    out = []
    for sample in x:
        top, left, ch, cw = _box(h, w)
        crop = sample[..., top:top + ch, left:left + cw]
        flat = crop.reshape(-1, 1, ch, cw) if crop.dim() == 4 else crop.unsqueeze(0)
        resized = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False, antialias=ch > h or cw > w)
        resized = resized.reshape(sample.shape) if crop.dim() == 4 else resized.squeeze(0)
        if bool(torch.rand(1) < 0.5):
            resized = resized.flip(-1)
        out.append(resized)
    return torch.stack(out)
