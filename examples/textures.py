"""A task where fine detail decides the class, generated on the fly (no download).

Each 3x32x32 image holds fine stripes (period 2 to 3 pixels, one of four orientations, random
phase and contrast) under noise, and a coarse bright blob in the left or the right half: the
class is orientation x side (8 classes). Taking the stripes one octave down (2x2 averages)
washes them out, so an octave network must keep them on its high branch.

Used by ``benchmarks/recovery.py`` and the tests of ``octify.finetune``; also a dataset factory
for the command line: ``octify finetune ... --data examples/textures.py:make_dataset``.

>>> ds = TextureDataset(16, seed=0)
>>> x, y = ds[3]
>>> tuple(x.shape), 0 <= int(y) < 8, len(ds)
((3, 32, 32), True, 16)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SIZE = 32
CLASSES = 8


def make_images(n: int, seed: int, size: int = SIZE, noise: float = 0.3) -> tuple[Tensor, Tensor]:
    """``n`` images and their labels, the same for the same seed; ``noise`` is the standard
    deviation of the pixel noise (the stripes' amplitude is 0.4 to 1): higher is harder."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    orient, side = labels // 2, labels % 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    theta = orient.float() * (math.pi / 4) + (torch.rand(n, generator=gen) - 0.5) * 0.2
    period = 2.0 + torch.rand(n, generator=gen)
    phase = torch.rand(n, generator=gen) * 2 * math.pi
    proj = xx[None] * torch.cos(theta)[:, None, None] + yy[None] * torch.sin(theta)[:, None, None]
    stripes = torch.sin(2 * math.pi * proj / period[:, None, None] + phase[:, None, None])
    contrast = 0.4 + 0.6 * torch.rand(n, 1, 1, generator=gen)
    cx = torch.where(side == 1, 0.75, 0.25) * size + (torch.rand(n, generator=gen) - 0.5) * size * 0.2
    cy = (0.3 + 0.4 * torch.rand(n, generator=gen)) * size
    blob = torch.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / (2 * (size / 8) ** 2))
    tint = torch.rand(n, 3, 1, 1, generator=gen) * 0.5 + 0.5
    images = contrast[:, None] * stripes[:, None] * tint + 1.5 * blob[:, None] + noise * torch.randn(n, 3, size, size, generator=gen)
    return images, labels


class TextureDataset(torch.utils.data.Dataset):
    """``n`` generated (image, label) samples; ``seed`` picks the draw (train and test differ by seed)."""

    def __init__(self, n: int = 4096, seed: int = 0, noise: float = 0.3) -> None:
        self.images, self.labels = make_images(n, seed, noise=noise)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]


def make_dataset() -> TextureDataset:
    """The command line's dataset factory: 4096 training samples."""
    return TextureDataset(4096, seed=0)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.short is None else self.short(x)))


class TextureNet(nn.Module):
    """A small residual CNN for the texture task (about 0.2 M parameters)."""

    def __init__(self, width: int = 32, classes: int = CLASSES) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(_Block(width, width, 1), _Block(width, width, 1))
        self.layer2 = nn.Sequential(_Block(width, 2 * width, 2), _Block(2 * width, 2 * width, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1))


def build_model() -> TextureNet:
    return TextureNet()
