"""The datamodule contract: three splits, and loaders the engine can resume.

A split is either a tuple of tensors (it fits in memory: served by the fast
``TensorLoader`` straight from the training device) or any ``Dataset`` (served by
a ``DataLoader`` with workers; a map-style one resumes exactly mid-epoch, an
``IterableDataset`` restarts its epoch). ``loader`` in the config can force either
path. Batches may be tensors, tuples, lists or (nested) dicts: a subclass sets
``collate_fn`` for its own. A subclass may also override ``train_loader`` & co. to
return any iterable of batches.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from expkit.data.options import DataOptions
from expkit.data.loaders import TensorLoader, TorchDataLoader, dataloader_options, per_rank
from expkit.engine.loaders import IterableBatches
from expkit.errors import ConfigError
from expkit.options import Configurable

Split = Union[tuple[torch.Tensor, ...], Dataset]


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


class DataModule(Configurable):
    """Subclasses implement ``_load`` and set ``input_shape`` / ``num_classes``; their options
    are a ``DataOptions`` subclass set as ``Options``."""

    Options = DataOptions
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    #: How a list of samples becomes a batch on the DataLoader path (None: torch's default).
    collate_fn: Callable[[list], Any] | None = None

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        if opts.input_shape is not None and tuple(opts.input_shape) != tuple(self.input_shape):
            raise ConfigError(f"data.input_shape={list(opts.input_shape)}: {type(self).__name__} yields "
                              f"{list(self.input_shape)}")
        if opts.num_classes is not None and opts.num_classes != self.num_classes:
            raise ConfigError(f"data.num_classes={opts.num_classes}: {type(self).__name__} has {self.num_classes}")
        self.batch_size, self.eval_batch_size = opts.batch_size, opts.eval_batch_size or max(opts.batch_size, 256)
        self.loader, self.num_workers, self.drop_last, self.seed = opts.loader, opts.num_workers, opts.drop_last, opts.seed
        self.shuffle = opts.shuffle  # false: the same batch order every epoch (debug=overfit)
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
        # Both batch sizes are global (all ranks together): each rank takes its share.
        batch_size = per_rank(self.batch_size, world_size) if train else -(-self.eval_batch_size // world_size)
        common = dict(batch_size=batch_size, shuffle=train and self.shuffle,
                      drop_last=self.drop_last and train, seed=self.seed, rank=rank, world_size=world_size,
                      pad=train, device=device)
        use_memory = self.loader == "memory" or (self.loader == "auto" and isinstance(data, tuple))
        if use_memory:
            if not isinstance(data, tuple):
                data = _materialize(data)
            return TensorLoader(data, **common)
        dataset = TensorDataset(*data) if isinstance(data, tuple) else data
        workers = dict(num_workers=self.num_workers, pin_memory=self.opts.pin_memory, collate_fn=self.collate_fn,
                       persistent_workers=self.opts.persistent_workers, prefetch_factor=self.opts.prefetch_factor)
        if isinstance(dataset, IterableDataset):  # it orders and shards itself: no exact mid-epoch resume
            return IterableBatches(DataLoader(dataset, batch_size=common["batch_size"],
                                              **dataloader_options(device, **workers)))
        return TorchDataLoader(dataset, **workers, **common)

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
