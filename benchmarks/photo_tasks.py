"""Networks trained here on real photographs, for ``benchmarks/recovery.py --kind embedding|dense``.

The photographs are the ones scikit-image ships in ``skimage/data`` (astronaut, coffee, chelsea,
rocket, hubble_deep_field, brick, grass, ...: no download). Whole photographs are held out: every
fourth one, in name order, gives only evaluation crops. Crops are 64x64 at a random scale (the
photo resized to 1/4, 1/3, 5/12 or 1/2 of its side first), flipped at random.

- ``EmbedNet``: a small CNN whose output is an L2-normalised 64-d embedding, trained with a
  normalised-softmax metric loss (crops of the same training photo are one class; the class
  weights are a separate head, not part of the network).
- ``EdgeNet``: a small encoder-decoder that maps a noisy crop to the Sobel edge magnitude of the
  clean crop (a dense map made of fine detail, what an octave down loses first).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

SIZE = 64
HELD_OUT = ("chelsea", "coffee", "rocket", "coins", "moon")


def photos() -> Tuple[List[torch.Tensor], List[torch.Tensor], List[str]]:
    """(training photos, held-out photos, held-out names): float RGB (3, H, W) in [0, 1]."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    files = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg") and "chessboard" not in p.name and "logo" not in p.name)
    train, held, names = [], [], []
    for p in files:
        img = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        if min(t.shape[1:]) < 2 * SIZE:
            continue
        (held if p.stem in HELD_OUT else train).append(t)
        if p.stem in HELD_OUT:
            names.append(p.stem)
    return train, held, names


SCALES = (0.25, 0.33, 0.42, 0.5)
_PYRAMIDS: dict = {}


def _pyramid(img: torch.Tensor) -> List[torch.Tensor]:
    """The photo at each of SCALES (at least 64 pixels a side), computed once per photo."""
    key = id(img)
    if key not in _PYRAMIDS:
        _PYRAMIDS[key] = [
            F.interpolate(img[None], size=(max(SIZE, int(img.shape[1] * s)), max(SIZE, int(img.shape[2] * s))), mode="area")[0]
            for s in SCALES
        ]
    return _PYRAMIDS[key]


def crops(images: List[torch.Tensor], n: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops (N, 3, 64, 64), ImageNet-normalised, and the index of the photo each came from."""
    g = torch.Generator().manual_seed(seed)
    out, owner = [], []
    for _ in range(n):
        k = int(torch.randint(len(images), (1,), generator=g))
        levels = _pyramid(images[k])
        small = levels[int(torch.randint(len(levels), (1,), generator=g))]
        h, w = small.shape[1], small.shape[2]
        y = int(torch.randint(h - SIZE + 1, (1,), generator=g))
        x = int(torch.randint(w - SIZE + 1, (1,), generator=g))
        c = small[:, y:y + SIZE, x:x + SIZE]
        if float(torch.rand(1, generator=g)) < 0.5:
            c = c.flip(2)
        out.append(c)
        owner.append(k)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (torch.stack(out) - mean) / std, torch.tensor(owner)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EmbedNet(nn.Module):
    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 32), _block(32, 32), _block(32, 64, 2), _block(64, 64), _block(64, 128, 2), _block(128, 128), _block(128, 128, 2),
        )
        self.proj = nn.Linear(128, dim)

    def forward(self, x):
        return F.normalize(self.proj(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)), dim=1)


class EdgeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e1, self.e2, self.e3 = _block(3, 32), _block(32, 64, 2), _block(64, 64, 2)
        self.d2 = _block(128, 64)
        self.d1 = _block(96, 32)
        self.out = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(a)
        c = self.e3(b)
        u = self.d2(torch.cat([F.interpolate(c, scale_factor=2.0, mode="nearest"), b], 1))
        u = self.d1(torch.cat([F.interpolate(u, scale_factor=2.0, mode="nearest"), a], 1))
        return self.out(u)


def edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel edge magnitude of the (normalised) crops' grey level: (N, 1, H, W)."""
    grey = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])[None, None]
    gx, gy = F.conv2d(grey, kx, padding=1), F.conv2d(grey, kx.transpose(2, 3), padding=1)
    return (gx.square() + gy.square() + 1e-6).sqrt()


def train_embedding(images: List[torch.Tensor], steps: int, seed: int = 0) -> EmbedNet:
    torch.manual_seed(seed)
    net, classes = EmbedNet(), nn.Linear(64, len(images), bias=False)
    opt = torch.optim.AdamW(list(net.parameters()) + list(classes.parameters()), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    net.train()
    for step in range(steps):
        x, y = crops(images, 64, seed=1000 + step)
        logits = 16.0 * F.normalize(classes.weight, dim=1) @ net(x).T  # normalised softmax (a metric loss)
        loss = F.cross_entropy(logits.T, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def train_edges(images: List[torch.Tensor], steps: int, noise: float = 0.3, seed: int = 0) -> EdgeNet:
    torch.manual_seed(seed)
    net = EdgeNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    net.train()
    for step in range(steps):
        x, _ = crops(images, 32, seed=1000 + step)
        loss = F.mse_loss(net(noisy(x, noise, step)), edges(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def noisy(x: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
