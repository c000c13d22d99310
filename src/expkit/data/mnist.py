"""MNIST and Fashion-MNIST through torchvision, held in memory as normalized tensors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from expkit.data.base import DataModule, Split, split_indices
from expkit.data.options import MNISTOptions
from expkit.errors import DataError

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MNISTDataModule(DataModule):
    input_shape = (1, 28, 28)
    num_classes = 10
    dataset_class = "MNIST"
    mean, std = 0.1307, 0.3081

    Options = MNISTOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.root, self.download, self.val_fraction = Path(self.opts.root), self.opts.download, self.opts.val_fraction

    def _load(self) -> dict[str, Split]:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.dataset_class)
        raw = self.root / self.dataset_class / "raw"
        try:
            train = cls(str(self.root), train=True, download=self.download)
            test = cls(str(self.root), train=False, download=self.download)
        except RuntimeError as e:
            if self.download:
                raise DataError(f"{self.dataset_class}: download into {raw} failed ({e})") from None
            raise DataError(
                f"{self.dataset_class} files not found in {raw}: put {', '.join(_FILES)} (or their .gz) "
                f"there, or set data.download=true on a machine with internet access") from None

        def tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
            x = (ds.data.unsqueeze(1).to(torch.float32) / 255.0 - self.mean) / self.std
            return x, ds.targets.to(torch.long)

        x, y = tensors(train)
        val, tr = split_indices(len(y), [self.val_fraction], self.seed)
        return {"train": (x[tr], y[tr]), "val": (x[val], y[val]), "test": tensors(test)}


class FashionMNISTDataModule(MNISTDataModule):
    dataset_class = "FashionMNIST"
    mean, std = 0.2860, 0.3530
