"""When to validate inside an epoch: ``trainer.val_check_interval``.

A fraction ``f`` validates after every ``f`` of the epoch's optimizer steps; an integer
``N`` after every ``N``-th optimizer step of the run (``global_step % N == 0``). Both are
decided from the batch index and the step count alone, so a run resumed from a checkpoint
saved at one of these validations validates at exactly the same points as one that was
never interrupted. The epoch's last step is never one of them: the end-of-epoch
validation (``check_val_every_n_epoch``) covers it.
"""
from __future__ import annotations

from expkit.errors import ConfigError


class ValCheck:
    """The in-epoch validation points of one epoch (``due`` is called after each optimizer step)."""

    def __init__(self, interval: int | float | None, n_batches: int | None, step_ends: list[int] | None) -> None:
        """``step_ends``: the batch index each optimizer step of the epoch ends on (None: every batch)."""
        self.every_n_steps: int | None = None
        self.batches: frozenset[int] = frozenset()
        self.last_batch = None if n_batches is None else n_batches - 1
        if interval is None:
            return
        if isinstance(interval, float) and interval <= 1.0:
            if n_batches is None:
                raise ConfigError(f"trainer.val_check_interval={interval}: a fraction of the epoch needs a train "
                                  "loader with a length; give a number of optimizer steps")
            ends = step_ends if step_ends is not None else list(range(n_batches))
            every = max(1, int(len(ends) * interval))
            self.batches = frozenset(ends[j - 1] for j in range(every, len(ends), every))
        else:
            self.every_n_steps = int(interval)

    def due(self, batch_idx: int, global_step: int) -> bool:
        if self.every_n_steps is not None:
            return global_step % self.every_n_steps == 0 and batch_idx != self.last_batch
        return batch_idx in self.batches


def step_ends(plan: list[tuple[float, bool]] | None) -> list[int] | None:
    """The batch indices that end with an optimizer step, from an accumulation plan."""
    return None if plan is None else [i for i, (_, step) in enumerate(plan) if step]
