"""The data options (``--data``, ``--calibration``, ``--fidelity``): a directory of images -- one
folder per class (torchvision's ImageFolder: labels), or any folder of images (no labels, which
calibration, fidelity and distillation do not need) -- or ``file.py:factory`` returning a
Dataset; and how images are prepared (``ImagePrep``), said in the description."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from torch.utils.data import Dataset

from ..utils.choices import IMAGENET_MEAN, IMAGENET_STD
from .console import usage
from .loading import import_file

__all__ = ["load_dataset", "ImagePrep", "ImageFiles"]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImagePrep:
    """How an image file becomes the model's input: its shorter side resized to ``resize`` (by
    default the input's shorter side), centre-cropped to the input's (H, W), scaled to [0, 1],
    then normalised by ``mean`` / ``std`` (None: not normalised)."""

    size: Tuple[int, int] = (224, 224)
    resize: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = IMAGENET_MEAN
    std: Optional[Tuple[float, ...]] = IMAGENET_STD

    def transform(self) -> Any:
        from torchvision import transforms

        steps = [transforms.Resize(self.resize or min(self.size)), transforms.CenterCrop(self.size), transforms.ToTensor()]
        if self.mean is not None:
            steps.append(transforms.Normalize(self.mean, self.std))
        return transforms.Compose(steps)

    def describe(self) -> str:
        h, w = self.size
        if self.mean is None:
            norm = "not normalised (pixels in [0, 1])"
        elif self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD:
            norm = "ImageNet-normalised"
        else:
            norm = f"normalised by mean {self.mean} and std {self.std}"
        return (f"shorter side resized to {self.resize or min(self.size)}, centre-cropped to {h}x{w}, {norm} "
                "(--resize, --normalize change it)")


class ImageFiles(Dataset):
    """Every image file under a folder (recursively), as input tensors without labels."""

    def __init__(self, root: Path, transform: Any) -> None:
        self.files: List[Path] = sorted(f for f in root.rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file())
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from PIL import Image

        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB"))


def load_dataset(spec: str, prep: ImagePrep, option: str = "--data") -> Tuple[Dataset, str]:
    """(dataset, description in words) for the value ``spec`` of the command-line ``option``."""
    head, sep, tail = spec.strip().rpartition(":")
    path, name = (head, tail.strip()) if sep and head.lower().endswith(".py") and tail.strip() else (spec.strip(), None)
    p = Path(path)
    if p.suffix == ".py":
        module = import_file(str(p))
        fname = name or "make_dataset"
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise usage(f"{option} {spec}: {p} has no function {fname}(): expected file.py:FACTORY, a function returning a torch Dataset.")
        ds = factory()
        if not isinstance(ds, Dataset) or not hasattr(ds, "__len__"):
            raise usage(f"{option} {spec}: {p}:{fname}() returned a {type(ds).__name__}: expected a torch.utils.data.Dataset with a length.")
        return ds, f"{p}:{fname}() ({len(ds)} samples)"
    if p.is_dir():
        return _image_dir(p, prep, option)
    found = "nothing" if not p.exists() else "a file"
    raise usage(f"{option} {spec}: expected a directory of images (one folder per class for labels) or file.py:FACTORY, found {found} there.")


def _image_dir(p: Path, prep: ImagePrep, option: str) -> Tuple[Dataset, str]:
    from torchvision import datasets

    classes = [d for d in p.iterdir() if d.is_dir() and any(f.suffix.lower() in _IMAGE_SUFFIXES for f in d.rglob("*"))]
    loose = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES]
    if classes and not loose:
        ds = datasets.ImageFolder(str(p), transform=prep.transform())
        return ds, f"{p}: {len(ds)} images in {len(ds.classes)} class folders; {prep.describe()}"
    files = ImageFiles(p, prep.transform())
    if not len(files):
        raise usage(f"{option} {p}: expected a directory of images ({', '.join(_IMAGE_SUFFIXES)}), found none in it or below it.")
    return files, f"{p}: {len(files)} images, no labels; {prep.describe()}"
