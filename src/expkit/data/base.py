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

from expkit.data.augment import AugmentedDataset, is_random
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


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """The validation and test parts together leave something to train on."""
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction}: "
                          "their sum must be below 1")


class DataModule(Configurable):
    """Subclasses implement ``_load`` and set ``input_shape`` / ``num_classes`` (or override
    ``sizes``); their options are a ``DataOptions`` subclass set as ``Options``."""

    Options = DataOptions
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    #: How a list of samples becomes a batch on the DataLoader path (None: torch's default).
    collate_fn: Callable[[list], Any] | None = None

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        self.batch_size, self.eval_batch_size = opts.batch_size, opts.eval_batch_size or max(opts.batch_size, 256)
        self.loader, self.num_workers, self.drop_last, self.seed = opts.loader, opts.num_workers, opts.drop_last, opts.seed
        self.shuffle = opts.shuffle  # false: the same batch order every epoch (debug=overfit)
        self.augment = list(opts.augment or [])  # training batches only
        self.splits: dict[str, Split] | None = None

    def _load(self) -> dict[str, Split]:
        """Return {'train': ..., 'val': ..., 'test': ...}."""
        raise NotImplementedError

    def setup(self, stage: str = "fit") -> None:
        if self.splits is None:
            self.splits = self._load()

    def sizes(self) -> dict[str, Any]:
        """What a model's shape takes from this data, passed to its constructor by name
        (``expkit.config.sizes``): ``num_outputs`` is the width of its last layer. A subclass
        whose sizes depend on the data (a vocabulary) calls ``self.setup()`` first."""
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes, "num_outputs": self.num_classes}

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
        augment = self.augment if train else []
        use_memory = self.loader == "memory" or (self.loader == "auto" and isinstance(data, tuple))
        if use_memory:
            if not isinstance(data, tuple):
                data = _materialize(data, f"{type(self).__name__} {split} split")
            return TensorLoader(data, **common, augment=augment)
        dataset = TensorDataset(*data) if isinstance(data, tuple) else data
        if augment:
            dataset = AugmentedDataset(dataset, augment)
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


def _random_transforms(dataset: Any) -> list[str]:
    """The random transforms a data set (or the data sets it wraps) applies to its samples."""
    found = []
    while dataset is not None:
        for name in ("transform", "transforms", "target_transform"):
            t = getattr(dataset, name, None)
            if t is not None and not isinstance(t, (list, tuple)) and is_random(t):
                found.append(type(t).__name__)
        dataset = getattr(dataset, "dataset", None)  # Subset, AugmentedDataset
    return found


def _materialize(dataset: Dataset, what: str = "data set") -> tuple[torch.Tensor, ...]:
    """Stack a map-style data set into tensors (for ``loader=memory`` on a ``Dataset``).

    Stacking runs a data set's transforms once, so random ones would be frozen: refused, when
    its transforms say so or when samples read again come out different."""
    random = _random_transforms(dataset)
    stacked: tuple[torch.Tensor, ...] = ()
    if not random:
        items = [dataset[i] for i in range(len(dataset))]
        stacked = tuple(torch.stack([torch.as_tensor(item[j]) for item in items]) for j in range(len(items[0])))
        if any(not torch.equal(torch.as_tensor(dataset[i][0]), stacked[0][i]) for i in range(min(8, len(items)))):
            random = ["samples read twice differ"]
    if random:
        raise ConfigError(f"data.loader=memory: the {what} ({type(dataset).__name__}) transforms its samples "
                          f"at random ({', '.join(random)}); stacking it once would freeze them: use "
                          "data.loader=dataloader, or data.augment with expkit's batched transforms")
    return stacked
