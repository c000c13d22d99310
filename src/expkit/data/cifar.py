"""CIFAR-10 and CIFAR-100 from the original pickled batches, held in memory as normalized tensors.

``data.root`` holds ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``), as torchvision and the
original distribution lay them out. Files on disk are read as they are (so locally made or
converted batches work); only ``data.download=true`` goes to the network, through torchvision,
which verifies the archive's checksum.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expkit.data.base import DataModule, Split, split_indices
from expkit.data.options import CIFAR10Options, CIFAR100Options
from expkit.errors import DataError


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: images ``(N, 3, 32, 32)`` uint8 and integer labels."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e})") from None
    if len(images) != len(labels):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


class CIFAR10DataModule(DataModule):
    Options = CIFAR10Options
    input_shape = (3, 32, 32)
    num_classes = 10
    folder, train_files, test_files, label_key = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], \
        ["test_batch"], "labels"
    meta_file, names_key = "batches.meta", "label_names"
    dataset_class = "CIFAR10"
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.root, self.download, self.val_fraction = Path(self.opts.root), self.opts.download, self.opts.val_fraction
        self.class_names: list[str] = []

    def _files(self) -> list[Path]:
        return [self.root / self.folder / name for name in (*self.train_files, *self.test_files, self.meta_file)]

    def _fetch(self) -> None:
        """Download and extract through torchvision (it checks the archive's MD5)."""
        import torchvision.datasets

        try:
            getattr(torchvision.datasets, self.dataset_class)(str(self.root), train=True, download=True)
        except Exception as e:  # noqa: BLE001 - network and archive errors: one line naming the place
            raise DataError(f"{self.dataset_class}: download into {self.root / self.folder} failed ({e})") from None

    def _load(self) -> dict[str, Split]:
        missing = [p for p in self._files() if not p.is_file()]
        if missing and self.download:
            self._fetch()
            missing = [p for p in self._files() if not p.is_file()]
        if missing:
            raise DataError(f"{self.dataset_class} files not found: {missing[0]} is missing; put "
                            f"{', '.join(p.name for p in self._files())} in {self.root / self.folder}/ "
                            "(data.root is the folder that holds it), or set data.download=true on a machine "
                            "with internet access")
        with open(self.root / self.folder / self.meta_file, "rb") as f:
            self.class_names = list(pickle.load(f, encoding="latin1").get(self.names_key, []))

        def tensors(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [read_batch(self.root / self.folder / name, self.label_key) for name in names]
            x = torch.from_numpy(np.concatenate([p[0] for p in parts])).to(torch.float32) / 255.0
            mean, std = torch.tensor(self.mean).view(1, 3, 1, 1), torch.tensor(self.std).view(1, 3, 1, 1)
            y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.root / self.folder}: labels must be in [0, {self.num_classes}), "
                                f"found {int(y.min())}..{int(y.max())}")
            return (x - mean) / std, y

        x, y = tensors(self.train_files)
        val, train = split_indices(len(y), [self.val_fraction], self.seed)
        return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": tensors(self.test_files)}


class CIFAR100DataModule(CIFAR10DataModule):
    Options = CIFAR100Options
    num_classes = 100
    folder, train_files, test_files, label_key = "cifar-100-python", ["train"], ["test"], "fine_labels"
    meta_file, names_key = "meta", "fine_label_names"
    dataset_class = "CIFAR100"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
