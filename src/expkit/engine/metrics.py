"""Exact epoch metrics without a host sync per step.

Each step adds ``value * batch_size`` to a running sum that stays on the device;
the host reads the sums only when it logs. Means are therefore weighted by batch
size (never a mean of batch means), and under DDP the sums and counts are
all-reduced before dividing, so the result equals the single-process value.
"""
from __future__ import annotations

import time
from typing import Mapping

import torch

from expkit.engine import distributed as dist


#: Logged at step logs only and about that moment (wall time): no final value of a run.
STEP_ONLY_METRICS = frozenset({"train/samples_per_s"})


def with_derived(task: object, means: dict[str, float]) -> dict[str, float]:
    """``means`` and the task's metrics derived from them (``Task.derived_metrics``: ppl = exp(loss))."""
    derive = getattr(task, "derived_metrics", None)
    return {**means, **derive(means)} if derive is not None and means else means


class MeanAccumulator:
    """Running, sample-weighted means of named scalar tensors.

    A step costs no device op: its values are only kept, as a row. Rows are stacked,
    weighted by their batch sizes and summed in bulk (four ops for up to ``FLUSH_ROWS``
    steps) when the sums are read. A checkpoint
    holds the kept rows as they are, so a run resumed between two reads groups its
    additions exactly as an uninterrupted run does (and logs the same bits).
    """

    #: Rows kept at most before they are summed (bounds memory when reads are rare).
    FLUSH_ROWS = 1024

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._sums: torch.Tensor | None = None
        self._rows: list[tuple[torch.Tensor, ...]] = []
        self._sizes: list[int] = []
        self.count = 0

    @staticmethod
    def row(values: Mapping[str, torch.Tensor]) -> tuple[tuple[str, ...], tuple[torch.Tensor, ...]]:
        """``(names, values)`` of one step, detached: what the engine shares between accumulators."""
        return tuple(values), tuple(v.detach() if v.requires_grad else v for v in values.values())

    def add_row(self, names: tuple[str, ...], row: tuple[torch.Tensor, ...], batch_size: int) -> None:
        """Keep a row (no device work until the sums are read)."""
        if names != self._names:
            self._flush()
            if self._sums is not None:  # the metric names changed between steps: merge by name
                merged = self.sums
                zero = self._sums.new_zeros(())
                self._sums = torch.stack([merged.get(n, zero) for n in names] +
                                         [v for n, v in merged.items() if n not in names])
                row = tuple(row) + (zero,) * (len(merged) - len(set(names) & set(merged)))
                names = tuple(names) + tuple(n for n in merged if n not in names)
            self._names = names
        self._rows.append(row)
        self._sizes.append(batch_size)
        self.count += batch_size
        if len(self._rows) >= self.FLUSH_ROWS:
            self._flush()

    def update(self, values: Mapping[str, torch.Tensor], batch_size: int) -> None:
        if values:
            self.add_row(*self.row(values), batch_size)
        else:
            self.count += batch_size

    def _flush(self) -> None:
        """Add the kept rows to the sums: float64(value) * batch_size, summed (float32 on MPS)."""
        if not self._rows:
            return
        rows = self._stacked()
        dtype = torch.float64 if rows.device.type != "mps" else torch.float32
        rows = rows if rows.dtype == dtype else rows.to(dtype)
        weights = torch.tensor(self._sizes, dtype=dtype).to(rows.device, non_blocking=True)
        sums = (rows * weights.unsqueeze(1)).sum(dim=0)
        self._sums = sums if self._sums is None else self._sums.add_(sums)
        self._rows, self._sizes = [], []

    def _stacked(self) -> torch.Tensor:
        """The kept rows as one (rows, names) tensor: one stack of every value."""
        return torch.stack([v for row in self._rows for v in row]).view(len(self._rows), -1)

    @property
    def sums(self) -> dict[str, torch.Tensor]:
        self._flush()
        if self._sums is None:
            return {}
        return dict(zip(self._names, self._sums.clone().unbind()))

    def compute(self, sync: bool = True) -> dict[str, float]:
        """Read the means (one host sync), reduced over all ranks when ``sync``."""
        self._flush()
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
        self._names, self._sums, self._rows, self._sizes, self.count = (), None, [], [], 0

    def state_dict(self) -> dict:
        """The sums so far and the rows not yet summed (kept apart: see the class docstring)."""
        sums = {} if self._sums is None else dict(zip(self._names, self._sums.cpu().unbind()))
        rows = self._stacked().cpu() if self._rows else None
        return {"names": list(self._names), "sums": sums, "rows": rows, "sizes": list(self._sizes),
                "count": self.count}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        sums = state["sums"]
        self._names = tuple(state.get("names") or sums)
        self._sums = torch.stack([sums[n].to(device) for n in self._names]) if sums else None
        rows = state.get("rows")
        self._rows = [] if rows is None else [tuple(row.unbind()) for row in rows.to(device)]
        self._sizes = [int(size) for size in state.get("sizes", [])]
        self.count = int(state["count"])


class TrainMeters:
    """Training metrics twice over: exact means of the epoch, and of the window since the last step log."""

    def __init__(self) -> None:
        self.epoch, self.window = MeanAccumulator(), MeanAccumulator()
        self._clock, self._samples = time.perf_counter(), 0  # for samples/s: wall time, not in checkpoints

    def add(self, metrics: Mapping[str, torch.Tensor], batch_size: int) -> None:
        """One row per step, shared by both accumulators (no metrics: only the counts move)."""
        self._samples += batch_size
        names, row = MeanAccumulator.row(metrics) if metrics else ((), None)
        for meter in (self.epoch, self.window):
            meter.add_row(names, row, batch_size) if row is not None else meter.update({}, batch_size)

    def epoch_means(self) -> dict[str, float]:
        """The epoch's means over all ranks; its sums start again."""
        means = self.epoch.compute()
        self.epoch.reset()
        return means

    def window_means(self) -> dict[str, float]:
        """This rank's means since the last call (no collective: step logs are rank 0's)."""
        means = self.window.compute(sync=False)
        self.window.reset()
        return means

    def restart_clock(self) -> None:
        """Training (re)starts now: what came before (validation, saving, a resume) is not timed."""
        self._clock, self._samples = time.perf_counter(), 0

    def throughput(self) -> dict[str, float]:
        """``train/samples_per_s`` of all ranks (equal shards of the global batch) since the last
        call or clock restart. Read at the step log after the window's means, whose read synced the device."""
        now = time.perf_counter()
        rate = self._samples * dist.world_size() / (now - self._clock) if now > self._clock else 0.0
        self._clock, self._samples = now, 0
        return {"train/samples_per_s": rate}  # in STEP_ONLY_METRICS

    def restart_epoch(self) -> None:
        self.epoch.reset()
        self.window.reset()

    def state_dict(self) -> dict:
        return {"train_metrics": self.epoch.state_dict(), "window": self.window.state_dict()}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self.epoch.load_state_dict(state["train_metrics"], device)
        self.window.load_state_dict(state["window"], device)
