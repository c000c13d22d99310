"""What the trainer needs from a loader, and the adapter for any other iterable of batches.

The built-in loaders (``expkit.data.loaders``) are ``ResumableLoader``s: they know their
batch sizes and can continue mid-epoch from a checkpoint. Any other iterable a
datamodule returns is served through ``IterableBatches``: it trains the same, but a
resume starts its interrupted epoch again from the first batch.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import torch

from expkit.errors import ConfigError

log = logging.getLogger(__name__)


@runtime_checkable
class ResumableLoader(Protocol):
    """A loader that can be positioned inside an epoch (``position``: batches served)."""

    position: int
    resumes_mid_epoch: bool

    def set_epoch(self, epoch: int) -> None: ...
    def restart(self) -> None: ...
    def sizes(self) -> list[int] | None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def __iter__(self) -> Iterator[Any]: ...


def batch_limit(limit: int | float | None, loader: Any) -> int | None:
    """How many batches of ``loader`` to run: all, a count, or a fraction (None: until it ends)."""
    try:
        available: int | None = len(loader)
    except TypeError:
        available = None
    if limit is None:
        return available
    if isinstance(limit, float) and limit <= 1.0:
        if available is None:
            raise ConfigError(f"limit={limit}: a fraction needs a loader with a length; give a number of batches")
        return max(1, int(available * limit)) if available else 0
    return int(limit) if available is None else min(int(limit), available)


def planned_steps(loader: Any, limit: int | float | None, accumulate: int, max_epochs: int,
                  max_steps: int) -> int | None:
    """The optimizer steps a run will take (for per-step schedules), None if the loader has no length."""
    n_batches = batch_limit(limit, loader)
    if n_batches is None:
        return max_steps if max_steps != -1 else None
    total = -(-n_batches // accumulate) * max_epochs
    return min(total, max_steps) if max_steps != -1 else total


def accumulation_plan(loader: Any, n_batches: int | None, accumulate: int) -> list[tuple[float, bool]] | None:
    """``(loss weight, optimizer step after it)`` for each batch of an epoch; None when every
    batch has weight 1 and steps.

    Each micro-batch is weighted by its share of the samples in its accumulation cycle, so k
    accumulated batches equal one k-times larger batch exactly, also in an uneven last cycle.
    Under DDP the share is of the global cycle (all ranks; DDP averages gradients over ranks),
    so an uneven last global batch weighs as it would in one process. A loader that does not
    know its batch sizes gets equal weights within a cycle.
    """
    shared = getattr(loader, "global_sizes", lambda: None)()
    world = getattr(loader, "world_size", 1)
    sizes = loader.sizes()
    if accumulate == 1 and (shared is None or all(size * world == whole for size, whole in zip(sizes, shared))):
        return None
    if sizes is None and n_batches is None:
        raise ConfigError(f"trainer.accumulate_grad_batches={accumulate}: needs a train loader with a length "
                          f"({type(getattr(loader, 'iterable', loader)).__name__} has none)")
    sizes = sizes[:n_batches] if sizes is not None else [1] * n_batches
    plan = []
    for start in range(0, len(sizes), accumulate):
        cycle = sizes[start:start + accumulate]
        total = sum(cycle) if shared is None else sum(shared[start:start + len(cycle)]) / world
        plan += [(size / total, i == len(cycle) - 1) for i, size in enumerate(cycle)]
    return plan


def describe_batches(loader: Any, accumulate: int) -> str | None:
    """What one optimizer step sees, said at the start of fit (None for a loader that does not know)."""
    per_rank, world = getattr(loader, "batch_size", None), getattr(loader, "world_size", 1)
    if per_rank is None:
        return None
    text = f"batch: {per_rank * world} per forward pass"
    if world > 1:
        text += f" ({world} ranks x {per_rank})"
    if accumulate > 1:
        text += f" x {accumulate} accumulated"
    return f"{text} = {per_rank * world * accumulate} samples per optimizer step"


def move_to(batch: Any, device: torch.device, non_blocking: bool = False, channels_last: bool = False) -> Any:
    """A batch (a tensor, or tuples, lists and dicts of them, nested) on ``device``."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=non_blocking)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device, non_blocking, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device, non_blocking, channels_last) for k, v in batch.items()}
    return batch


class IterableBatches:
    """Any iterable of batches (a DataLoader over an ``IterableDataset``, a custom loader).

    It trains like the built-in loaders, but cannot be positioned inside an epoch: a run
    resumed from a mid-epoch checkpoint starts that epoch again from its first batch
    (logged). Batches are moved to the device by the trainer.
    """

    resumes_mid_epoch = False

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.iterable, self.epoch, self.position = iterable, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0
        for owner in (self.iterable, getattr(self.iterable, "sampler", None)):
            if callable(getattr(owner, "set_epoch", None)):  # e.g. a DistributedSampler
                owner.set_epoch(epoch)

    def restart(self) -> None:
        self.position = 0

    def sizes(self) -> None:
        return None  # unknown until served

    def __len__(self) -> int:
        return len(self.iterable)  # TypeError when the iterable has no length

    def __iter__(self) -> Iterator[Any]:
        self.position = 0
        for batch in self.iterable:
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        if state.get("position"):
            log.warning("resume: %s cannot continue mid-epoch; epoch %d starts again from its first batch "
                        "(its %d batches already trained are trained again)", type(self.iterable).__name__,
                        self.epoch, int(state["position"]))


def as_loader(loader: Any) -> Any:
    """The built-in loaders as they are; any other iterable of batches wrapped."""
    return loader if isinstance(loader, ResumableLoader) else IterableBatches(loader)
