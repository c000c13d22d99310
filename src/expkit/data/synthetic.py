"""Random tensors of any shape with learnable labels: smoke tests and benchmarks."""
from __future__ import annotations

from typing import Sequence

import torch

from expkit.data.base import DataModule, Split


class SyntheticDataModule(DataModule):
    """Inputs ~ N(0, 1); labels = argmax of a fixed random linear map, so models can learn them."""

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10, num_train: int = 2048,
                 num_val: int = 256, num_test: int = 256, **kwargs) -> None:
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if value < 1:
                raise ValueError(f"{name}={value}: must be >= 1")
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: must be >= 2")
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        super().__init__(input_shape=input_shape, num_classes=num_classes, **kwargs)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    def _load(self) -> dict[str, Split]:
        generator = torch.Generator().manual_seed(self.seed)
        features = int(torch.tensor(self.input_shape).prod())
        teacher = torch.randn(features, self.num_classes, generator=generator)
        splits = {}
        for name, size in self.sizes.items():
            x = torch.randn(size, *self.input_shape, generator=generator)
            splits[name] = (x, (x.flatten(1) @ teacher).argmax(dim=1))
        return splits
