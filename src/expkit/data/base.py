"""The datamodule contract: three splits, and loaders the engine can resume.

A split is either a tuple of tensors (it fits in memory: served by the fast
``TensorLoader`` straight from the training device) or any ``Dataset`` (served by
a ``DataLoader`` with workers). ``loader`` in the config can force either path.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch
from torch.utils.data import Dataset, TensorDataset

from expkit.engine.loaders import TensorLoader, TorchDataLoader

Split = Union[tuple[torch.Tensor, ...], Dataset]
LOADERS = ("auto", "memory", "dataloader")


def split_indices(num_samples: int, fractions: Sequence[float], seed: int) -> list[torch.Tensor]:
    """Cut a seeded permutation of ``range(num_samples)`` into parts of the given fractions
    (the remainder is the last part): the same seed always gives the same split."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for fraction in fractions:
        size = int(round(num_samples * fraction))
        parts.append(order[start:start + size])
        start += size
    parts.append(order[start:])
    return parts


class DataModule:
    """Subclasses implement ``_load`` and set ``input_shape`` / ``num_classes``."""

    input_shape: tuple[int, ...] = ()
    num_classes: int = 0

    def __init__(self, batch_size: int = 64, eval_batch_size: int | None = None, loader: str = "auto",
                 num_workers: int = 0, drop_last: bool = False, seed: int = 0, shuffle: bool = True,
                 input_shape: Sequence[int] | None = None, num_classes: int | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size={eval_batch_size!r}: must be null or an integer >= 1")
        if loader not in LOADERS:
            raise ValueError(f"loader={loader!r}: must be one of {', '.join(LOADERS)}")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers}: must be >= 0")
        if input_shape is not None and tuple(input_shape) != tuple(self.input_shape):
            raise ValueError(f"input_shape={list(input_shape)}: {type(self).__name__} yields {list(self.input_shape)}")
        if num_classes is not None and num_classes != self.num_classes:
            raise ValueError(f"num_classes={num_classes}: {type(self).__name__} has {self.num_classes}")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or max(batch_size, 256)
        self.loader, self.num_workers, self.drop_last, self.seed = loader, num_workers, drop_last, seed
        self.shuffle = shuffle  # false: the same batch order every epoch (debug=overfit)
        self.splits: dict[str, Split] | None = None

    def _load(self) -> dict[str, Split]:
        """Return {'train': ..., 'val': ..., 'test': ...}."""
        raise NotImplementedError

    def setup(self, stage: str = "fit") -> None:
        if self.splits is None:
            self.splits = self._load()

    def num_samples(self, split: str) -> int:
        self.setup()
        data = self.splits[split]
        return len(data[0]) if isinstance(data, tuple) else len(data)

    def _make_loader(self, split: str, device: torch.device, rank: int, world_size: int) -> Any:
        self.setup()
        data = self.splits[split]
        train = split == "train"
        common = dict(batch_size=self.batch_size if train else self.eval_batch_size, shuffle=train and self.shuffle,
                      drop_last=self.drop_last and train, seed=self.seed, rank=rank, world_size=world_size,
                      pad=train, device=device)
        use_memory = self.loader == "memory" or (self.loader == "auto" and isinstance(data, tuple))
        if use_memory:
            if not isinstance(data, tuple):
                data = _materialize(data)
            return TensorLoader(data, **common)
        dataset = TensorDataset(*data) if isinstance(data, tuple) else data
        return TorchDataLoader(dataset, num_workers=self.num_workers, **common)

    def train_loader(self, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
        return self._make_loader("train", device, rank, world_size)

    def val_loader(self, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
        return self._make_loader("val", device, rank, world_size)

    def test_loader(self, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
        return self._make_loader("test", device, rank, world_size)


def _materialize(dataset: Dataset) -> tuple[torch.Tensor, ...]:
    """Stack a map-style data set into tensors (for ``loader=memory`` on a ``Dataset``)."""
    items = [dataset[i] for i in range(len(dataset))]
    return tuple(torch.stack([torch.as_tensor(item[j]) for item in items]) for j in range(len(items[0])))
