"""``--data``: a torchvision ImageFolder directory, or ``file.py:factory`` returning a Dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from torch.utils.data import Dataset

from .console import usage
from .loading import import_file

__all__ = ["load_dataset", "IMAGENET_MEAN", "IMAGENET_STD"]

# ImageFolder images are normalised as torchvision's classifiers were trained.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_dataset(spec: str, size: Optional[Tuple[int, int]]) -> Tuple[Dataset, str]:
    """(dataset, description in words). ``size`` (H, W) is what ImageFolder images are resized
    and centre-cropped to: the shape the model was converted on."""
    head, sep, tail = spec.strip().rpartition(":")
    path, name = (head, tail.strip()) if sep and head.lower().endswith(".py") and tail.strip() else (spec.strip(), None)
    p = Path(path)
    if p.suffix == ".py":
        module = import_file(str(p))
        fname = name or "make_dataset"
        factory = getattr(module, fname, None)
        if not callable(factory):
            raise usage(f"{p} has no function {fname}(): expected --data file.py:FACTORY, a function returning a torch Dataset.")
        ds = factory()
        if not isinstance(ds, Dataset) or not hasattr(ds, "__len__"):
            raise usage(f"{p}:{fname}() returned a {type(ds).__name__}: expected a torch.utils.data.Dataset with a length.")
        return ds, f"{p}:{fname}() ({len(ds)} samples)"
    if p.is_dir():
        return _image_folder(p, size), f"ImageFolder {p}"
    raise usage(f"--data {spec}: expected a directory of class folders (ImageFolder) or file.py:FACTORY, found {'nothing' if not p.exists() else 'a file'} there.")


def _image_folder(p: Path, size: Optional[Tuple[int, int]]) -> Dataset:
    from torchvision import datasets, transforms

    h, w = size or (224, 224)
    tf = transforms.Compose([
        transforms.Resize(min(h, w)), transforms.CenterCrop((h, w)), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    try:
        ds = datasets.ImageFolder(str(p), transform=tf)
    except (FileNotFoundError, RuntimeError) as e:
        raise usage(f"--data {p}: expected one folder per class holding images (torchvision ImageFolder): {e}") from None
    return ds
