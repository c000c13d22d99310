"""The non-finite guard: stop training on a NaN or infinite loss, and never save such weights.

Testing every loss at once would sync the host with the device each step, so the losses
are only kept, and ``check`` tests all of them in one stack when the trainer syncs anyway
(a step log, an epoch end, a checkpoint).
"""
from __future__ import annotations

from typing import Iterable

import torch

from expkit.engine import distributed as dist


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before saving bad weights."""


class NonFiniteGuard:
    #: Losses kept at most between checks (bounds memory when logs are rare).
    MAX_PENDING = 4096

    def __init__(self) -> None:
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) since the last check
        self._bad_step: int | None = None  # first step with a non-finite loss, once found

    def track(self, step: int, loss: torch.Tensor) -> None:
        self._pending.append((step, loss.detach()))

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.MAX_PENDING

    def check(self, epoch: int, last_good: str | None) -> None:
        """Raise if any step since the start had a non-finite loss on any rank (one host sync)."""
        if self._bad_step is None and self._pending:
            pending, self._pending = self._pending, []
            finite = torch.isfinite(torch.stack([loss.reshape(()) for _, loss in pending]))
            if not bool(finite.all()):
                self._bad_step = pending[int((~finite).nonzero()[0])][0]
        bad = int(dist.all_reduce_max(float(-1 if self._bad_step is None else self._bad_step)))
        if bad >= 0:
            raise NonFiniteLossError(f"non-finite loss at step {bad + 1} (epoch {epoch}); training stopped. "
                                     f"Last good checkpoint: {last_good or 'none saved yet'}")

    @staticmethod
    def check_weights(tensors: Iterable[torch.Tensor], where: str, last_good: str | None) -> None:
        """A finite loss can still leave inf/NaN weights after the update: refuse to save those."""
        floats = [t for t in tensors if t.is_floating_point()]
        if floats and not bool(torch.stack([torch.isfinite(t).all() for t in floats]).all()):
            raise NonFiniteLossError(f"non-finite weights {where}. "
                                     f"Last good checkpoint: {last_good or 'none saved yet'}")
