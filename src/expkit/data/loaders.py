"""The built-in resumable loaders: tensors in memory, or a ``torch.utils.data.DataLoader``.

Both follow one index scheme (``epoch_permutation``), so the in-memory fast path and the
DataLoader path see the same samples in the same order, shard the same way under DDP
and resume at the same position mid-epoch.

Under DDP a training batch is a *global* batch: its ``batch_size x world_size`` samples
are the ones a single process with the global batch would take, split over the ranks
(``global_sizes`` says how large each one is, so an uneven last batch is weighted right).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from expkit.data.augment import apply_batch, batch_seed, check_memory_transforms
from expkit.engine.loaders import move_to
from expkit.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


def per_rank(batch_size: int, world_size: int, key: str = "data.batch_size") -> int:
    """A rank's share of a global training batch; one line if the ranks cannot share it evenly."""
    if batch_size % world_size:
        raise ConfigError(f"{key}={batch_size}: the global batch must divide evenly over the {world_size} "
                          f"ranks; use a multiple of {world_size}")
    return batch_size // world_size


def epoch_permutation(num_samples: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The global sample order of one epoch: identical on every rank."""
    if not shuffle:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


def shard(order: torch.Tensor, rank: int, world_size: int, pad: bool) -> torch.Tensor:
    """This rank's part of ``order``: every ``world_size``-th sample, starting at ``rank``.

    Batch ``j`` of rank ``r`` is then rank ``r``'s part of global batch ``j``. With ``pad``
    the order is first wrapped around to a multiple of the world size (only needed when
    a last global batch has fewer samples than ranks). Otherwise no sample is repeated
    and shards may differ by one sample, which keeps metrics reduced across ranks exact.
    """
    if world_size == 1:
        return order
    if pad and len(order) % world_size:
        extra = world_size - len(order) % world_size
        order = torch.cat([order, order[:extra]])
    return order[rank::world_size]


def batch_sizes(num_samples: int, batch_size: int, drop_last: bool) -> list[int]:
    full, rest = divmod(num_samples, batch_size)
    return [batch_size] * full + ([rest] if rest and not drop_last else [])


class _Resumable:
    """Epoch bookkeeping shared by both loaders: order, position, state_dict."""

    resumes_mid_epoch = True  # a checkpoint taken mid-epoch continues at the next batch

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool, drop_last: bool,
                 seed: int, rank: int, world_size: int, pad: bool) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be >= 1")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        last = num_samples % (batch_size * world_size)
        # Training shares each global batch over the ranks. Only a last global batch with fewer
        # samples than ranks would leave a rank without a batch: then the order is padded.
        self.pad = pad and world_size > 1 and not drop_last and 0 < last < world_size
        self.shares_global_batches = pad and not self.pad
        if self.pad and rank == 0:
            log.warning("the last training batch has %d sample(s) for %d ranks: it is padded with %d repeated "
                        "sample(s), so this run differs slightly from one process (pick a batch_size that leaves "
                        "at least %d samples, or data.drop_last=true)", last, world_size, world_size - last,
                        world_size)
        self.epoch = 0
        self.position = 0  # batches already served in the current epoch
        self._order: torch.Tensor | None = None  # global order of the current epoch
        self._sizes: list[int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (a no-op if it is the restored epoch)."""
        if self._order is not None and epoch == self.epoch:
            return
        self.epoch, self.position, self._order = epoch, 0, None

    def restart(self) -> None:
        """Serve the current epoch again from its first batch (evaluation loaders)."""
        self.position = 0

    @property
    def order(self) -> torch.Tensor:
        if self._order is None:
            self._order = epoch_permutation(self.num_samples, self.seed, self.epoch, self.shuffle)
        return self._order

    def local_indices(self) -> torch.Tensor:
        return shard(self.order, self.rank, self.world_size, self.pad)

    def sizes(self) -> list[int]:
        """Batch sizes of the whole epoch on this rank (known without touching data; the same
        every epoch, so computed once)."""
        if self._sizes is None and self.shares_global_batches:
            self._sizes = [len(range(self.rank, size, self.world_size)) for size in self.global_sizes()]
        if self._sizes is None:
            n = len(shard(torch.empty(self.num_samples, dtype=torch.uint8), self.rank, self.world_size, self.pad))
            self._sizes = batch_sizes(n, self.batch_size, self.drop_last)
        return self._sizes

    def global_sizes(self) -> list[int] | None:
        """Sizes of the epoch's global training batches (all ranks together); None when evaluating."""
        if not self.shares_global_batches:
            return None
        return batch_sizes(self.num_samples, self.batch_size * self.world_size, self.drop_last)

    def __len__(self) -> int:
        return len(self.sizes())

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "order": self.order.clone(),
                "world_size": self.world_size, "batch_size": self.batch_size, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["order"]) != self.num_samples:
            raise CheckpointError(f"checkpoint data order has {len(state['order'])} samples, "
                             f"the data set has {self.num_samples}")
        self.epoch, self._order = int(state["epoch"]), state["order"].clone()
        position = int(state["position"])
        samples_seen = position * state["batch_size"] * state["world_size"]
        per_step = self.batch_size * self.world_size
        if samples_seen % per_step:
            raise CheckpointError(
                f"cannot resume mid-epoch: {samples_seen} samples were consumed with "
                f"world_size={state['world_size']} x batch_size={state['batch_size']}, which is not "
                f"a whole number of steps of world_size={self.world_size} x batch_size={self.batch_size}")
        self.position = samples_seen // per_step


class TensorLoader(_Resumable):
    """The in-memory fast path: tensors already on the device, indexed per batch.

    No workers, no collation, no host copies: each batch is one ``index_select``
    on tensors that live on the training device. ``augment`` transforms the first tensor
    of each batch there (``expkit.data.augment``), with per-sample draws from a generator
    seeded by (seed, epoch, batch position, rank): a resumed epoch gets the same pixels.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = False, device: torch.device | str = "cpu", augment: Sequence[Any] = ()) -> None:
        super().__init__(len(tensors[0]), batch_size, shuffle=shuffle, drop_last=drop_last,
                         seed=seed, rank=rank, world_size=world_size, pad=pad)
        self.device = torch.device(device)
        self.tensors = [t.to(self.device) for t in tensors]
        check_memory_transforms(augment)
        self.augment = list(augment)
        self.generator = torch.Generator(device=self.device) if self.augment else None

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        indices = self.local_indices().to(self.device)
        sizes = self.sizes()
        start = sum(sizes[: self.position])
        for size in sizes[self.position:]:
            idx = indices[start:start + size]
            start += size
            batch = [t.index_select(0, idx) for t in self.tensors]
            if self.augment:
                self.generator.manual_seed(batch_seed(self.seed, self.epoch, self.position, self.rank))
                batch[0] = apply_batch(self.augment, batch[0], self.generator)
            self.position += 1
            yield batch


class _IndexSampler(Sampler[int]):
    def __init__(self, loader: "TorchDataLoader") -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[int]:
        sizes = self.loader.sizes()
        start, stop = sum(sizes[: self.loader.position]), sum(sizes)
        return iter(self.loader.local_indices()[start:stop].tolist())

    def __len__(self) -> int:
        sizes = self.loader.sizes()
        return sum(sizes) - sum(sizes[: self.loader.position])


class TorchDataLoader(_Resumable):
    """The path for data that does not fit in memory: a ``torch.utils.data.DataLoader``
    with workers and pinned memory, driven by the same index scheme so it resumes exactly."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = False, device: torch.device | str = "cpu", num_workers: int = 0,
                 pin_memory: bool | None = None, persistent_workers: bool = False,
                 prefetch_factor: int | None = None, collate_fn: Callable[[list], Any] | None = None) -> None:
        super().__init__(len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last,
                         seed=seed, rank=rank, world_size=world_size, pad=pad)
        self.device = torch.device(device)
        # Its own generator: without one, every ``iter(DataLoader)`` draws a worker base
        # seed from the global torch RNG, so a run resumed mid-epoch (one extra iterator)
        # would continue with different dropout than an uninterrupted run.
        self.generator = torch.Generator()
        self.dataloader = DataLoader(
            dataset, batch_size=batch_size, sampler=_IndexSampler(self), drop_last=drop_last, generator=self.generator,
            **dataloader_options(self.device, num_workers, pin_memory, persistent_workers, prefetch_factor, collate_fn))

    def __iter__(self) -> Iterator[Any]:
        non_blocking = self.device.type == "cuda"
        # Worker seeds depend on where the iteration starts, never on the global RNG.
        self.generator.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + self.position) % 2**63)
        for batch in self.dataloader:
            self.position += 1
            yield move_to(batch, self.device, non_blocking)


def dataloader_options(device: torch.device, num_workers: int = 0, pin_memory: bool | None = None,
                       persistent_workers: bool = False, prefetch_factor: int | None = None,
                       collate_fn: Callable[[list], Any] | None = None) -> dict[str, Any]:
    """``DataLoader`` keywords: pinned memory on CUDA by default; worker options only with workers."""
    return dict(num_workers=num_workers, pin_memory=device.type == "cuda" if pin_memory is None else pin_memory,
                persistent_workers=persistent_workers and num_workers > 0,
                prefetch_factor=prefetch_factor if num_workers > 0 else None, collate_fn=collate_fn)


