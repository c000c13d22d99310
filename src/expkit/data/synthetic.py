"""Random tensors of any shape with learnable labels: smoke tests and benchmarks."""
from __future__ import annotations

from typing import Any

import torch

from expkit.data.base import DataModule, Split
from expkit.data.options import SyntheticOptions


class SyntheticDataModule(DataModule):
    """Inputs ~ N(0, 1); labels = argmax of a fixed random linear map, so models can learn them."""

    Options = SyntheticOptions

    def __init__(self, **options: Any) -> None:
        opts = self.Options.from_kwargs("SyntheticDataModule.", options)
        self.input_shape, self.num_classes = tuple(opts.input_shape), opts.num_classes  # what the base checks
        super().__init__(**options)
        self.split_sizes = {"train": opts.num_train, "val": opts.num_val, "test": opts.num_test}

    def _load(self) -> dict[str, Split]:
        generator = torch.Generator().manual_seed(self.seed)
        features = int(torch.tensor(self.input_shape).prod())
        teacher = torch.randn(features, self.num_classes, generator=generator)
        splits = {}
        for name, size in self.split_sizes.items():
            x = torch.randn(size, *self.input_shape, generator=generator)
            splits[name] = (x, (x.flatten(1) @ teacher).argmax(dim=1))
        return splits
