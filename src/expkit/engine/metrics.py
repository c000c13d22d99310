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
    """Running, sample-weighted means of named scalar tensors."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        for name, value in values.items():
            value = value.detach().to(torch.float64 if value.device.type != "mps" else torch.float32)
            weighted = value * batch_size
            if name in self.sums:
                self.sums[name] += weighted
            else:
                self.sums[name] = weighted
        self.count += batch_size

    def compute(self, sync: bool = True) -> dict[str, float]:
        """Read the means (one host sync), reduced over all ranks when ``sync``."""
        sync = sync and dist.is_distributed()
        # A rank whose evaluation shard is empty has no names; it still has to join the
        # all-reduce, so rank 0 (whose shard is never the smaller one) says which names.
        names = dist.broadcast_object(sorted(self.sums)) if sync else sorted(self.sums)
        if not names:
            return {}
        zero = torch.zeros((), dtype=torch.float64)
        sums = [self.sums.get(n, zero) for n in names]
        stacked = torch.stack([s.to(sums[0].device) for s in sums] + [sums[0].new_tensor(self.count)])
        if sync:
            stacked = dist.all_reduce_sum(stacked)
        values = stacked.tolist()
        count = values[-1]
        return {n: v / count for n, v in zip(names, values[:-1])} if count else {}

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def state_dict(self) -> dict:
        return {"sums": {n: s.cpu() for n, s in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.sums = {n: s.to(device) for n, s in state["sums"].items()}
        self.count = int(state["count"])
