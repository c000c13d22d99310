"""Your own images: one subfolder per class, PNG or JPEG, decoded in the DataLoader workers.

``data.root/<class name>/<image>``: a seeded split into train, val and test
(``val_fraction``, ``test_fraction``). A folder with its own split has ``train/`` and
``test/`` subfolders (and optionally ``val/``), each laid out by class; without ``val/`` the
validation images are a seeded ``val_fraction`` of ``train/``. Class names (sorted) come
from the folder names; every image is decoded to RGB by torchvision's decoders and resized
to ``image_size`` x ``image_size``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from expkit.data.base import DataModule, Split, split_indices
from expkit.data.options import ImageFolderOptions
from expkit.errors import ConfigError, DataError

EXTENSIONS = {".png", ".jpg", ".jpeg"}
SPLITS = ("train", "val", "test")


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """``(path, class index)`` of every image under ``folder/<class>/``, in a fixed order."""
    items = []
    for label, name in enumerate(classes):
        directory = folder / name
        if directory.is_dir():
            items += [(p, label) for p in sorted(directory.rglob("*")) if p.suffix.lower() in EXTENSIONS]
    return items


class ImageFiles(Dataset):
    """Decode, resize and normalize one image per item (runs in the DataLoader workers)."""

    def __init__(self, items: list[tuple[Path, int]], size: int, mean: list[float], std: list[float]) -> None:
        self.items, self.size = items, size
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image, read_file
        from torchvision.transforms.v2 import functional as TF

        path, label = self.items[index]
        try:
            image = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        except RuntimeError as e:
            raise DataError(f"{path}: cannot decode the image ({' '.join(str(e).split())})") from None
        if tuple(image.shape[1:]) != (self.size, self.size):
            image = TF.resize(image, [self.size, self.size], antialias=True)
        return (image.to(torch.float32) / 255.0 - self.mean) / self.std, label


class ImageFolderDataModule(DataModule):
    """The class folders are listed at construction (when ``root`` exists), so ``num_classes``
    is checked before anything is built; the images are listed and read at set-up."""

    Options = ImageFolderOptions

    def __init__(self, **options: Any) -> None:
        opts = self.Options.from_kwargs("ImageFolderDataModule.", options)
        self.root = Path(opts.root)
        self.own_split = (self.root / "train").is_dir() and (self.root / "test").is_dir()
        self.classes = class_folders(self.root / "train" if self.own_split else self.root) if self.root.is_dir() else []
        self.input_shape = (3, opts.image_size, opts.image_size)
        self.num_classes = len(self.classes) if self.classes else (opts.num_classes or 0)
        super().__init__(**options)
        if opts.num_classes is not None and self.classes and opts.num_classes != len(self.classes):
            raise ConfigError(f"data.num_classes={opts.num_classes}: ImageFolderDataModule has {len(self.classes)} "
                              f"(the class folders of {self.root})")
        if opts.val_fraction + opts.test_fraction >= 1:
            raise ConfigError(f"data.val_fraction={opts.val_fraction}, data.test_fraction={opts.test_fraction}: "
                              "their sum must be below 1")

    def _load(self) -> dict[str, Split]:
        o = self.opts
        if not self.root.is_dir():
            raise DataError(f"data.root={o.root}: no such folder (put one subfolder of images per class there)")
        if not self.classes:
            raise DataError(f"data.root={o.root}: no class subfolders (expected <root>/<class>/<image>)")
        if self.own_split:
            parts = {s: list_images(self.root / s, self.classes) for s in SPLITS if (self.root / s).is_dir()}
            if "val" not in parts:
                val, train = split_indices(len(parts["train"]), [o.val_fraction], self.seed)
                parts["val"] = [parts["train"][i] for i in val]
                parts["train"] = [parts["train"][i] for i in train]
        else:
            items = list_images(self.root, self.classes)
            test, val, train = split_indices(len(items), [o.test_fraction, o.val_fraction], self.seed)
            parts = {name: [items[i] for i in idx] for name, idx in (("train", train), ("val", val), ("test", test))}
        for name, items in parts.items():
            if not items:
                raise DataError(f"data.root={o.root}: the {name} split has no images (PNG or JPEG)")
        return {name: ImageFiles(items, o.image_size, o.mean, o.std) for name, items in parts.items()}
