"""Exact epoch metrics without a host sync per step.

Each step adds ``value * batch_size`` to a running sum that stays on the device;
the host reads the sums only when it logs. Means are therefore weighted by batch
size (never a mean of batch means), and under DDP the sums and counts are
all-reduced before dividing, so the result equals the single-process value.
"""
from __future__ import annotations

from typing import Mapping

import torch

from expkit.engine import distributed as dist


class MeanAccumulator:
    """Running, sample-weighted means of named scalar tensors.

    The sums live in one packed device vector, so a step costs one ``add_`` however
    many metrics there are (the engine calls ``add`` with values it weighted once
    for both of its accumulators). Each element still sees exactly the sequence of
    ``float64(value) * batch_size`` additions it always did.
    """

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._sums: torch.Tensor | None = None
        self.count = 0

    @staticmethod
    def weigh(values: Mapping[str, torch.Tensor], batch_size: int) -> tuple[tuple[str, ...], torch.Tensor]:
        """``(names, float64(values) * batch_size)`` as one vector (float32 on MPS)."""
        stacked = torch.stack(list(values.values())).detach()
        dtype = torch.float64 if stacked.device.type != "mps" else torch.float32
        return tuple(values), (stacked if stacked.dtype == dtype else stacked.to(dtype)) * batch_size

    def add(self, names: tuple[str, ...], weighted: torch.Tensor, batch_size: int) -> None:
        """Add a vector from ``weigh`` (the same vector may go to several accumulators)."""
        if self._sums is None:
            self._names, self._sums = names, weighted.clone()
        elif names == self._names:
            self._sums.add_(weighted)
        else:  # the metric names changed between steps: merge by name
            merged = self.sums
            for name, value in zip(names, weighted.unbind()):
                merged[name] = merged[name] + value if name in merged else value
            self._names, self._sums = tuple(merged), torch.stack(list(merged.values()))
        self.count += batch_size

    def update(self, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        if values:
            self.add(*self.weigh(values, batch_size), batch_size)
        else:
            self.count += batch_size

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        if self._sums is None:
            return {}
        return dict(zip(self._names, self._sums.clone().unbind()))

    def compute(self, sync: bool = True) -> dict[str, float]:
        """Read the means (one host sync), reduced over all ranks when ``sync``."""
        sync = sync and dist.is_distributed()
        # A rank whose evaluation shard is empty has no names; it still has to join the
        # all-reduce, so rank 0 (whose shard is never the smaller one) says which names.
        names = dist.broadcast_object(sorted(self._names)) if sync else sorted(self._names)
        if not names:
            return {}
        if self._sums is None:  # this rank saw no samples
            stacked = torch.zeros(len(names) + 1, dtype=torch.float64)
        else:
            order = [self._names.index(n) for n in names]
            stacked = torch.cat([self._sums[order], self._sums.new_tensor([self.count])])
        if sync:
            stacked = dist.all_reduce_sum(stacked)
        values = stacked.tolist()
        count = values[-1]
        return {n: v / count for n, v in zip(names, values[:-1])} if count else {}

    def reset(self) -> None:
        self._names, self._sums, self.count = (), None, 0

    def state_dict(self) -> dict:
        return {"sums": {n: s.cpu() for n, s in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        sums = state["sums"]
        self._names = tuple(sums)
        self._sums = torch.stack([s.to(device) for s in sums.values()]) if sums else None
        self.count = int(state["count"])
