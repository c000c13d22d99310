"""Learning-rate schedules the configs offer beyond torch's own (``conf/scheduler/warmup_cosine.yaml``)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from expkit.config.torch_options import WarmupCosineOptions
from expkit.errors import ConfigError
from expkit.options import Configurable


class WarmupCosineLR(LRScheduler, Configurable):
    """Linear warmup from ``warmup_start_factor * lr`` to ``lr`` over ``warmup_steps``, then a half
    cosine down to ``eta_min`` at ``total_steps``; constant at ``eta_min`` after it.

    Counted in optimizer steps, so it is always stepped per step (``interval``). ``total_steps=None``:
    the task fills in the run's planned steps. Its state (steps taken, the total) is plain numbers in
    ``state_dict``: a resumed run keeps the length it started with.
    """

    Options = WarmupCosineOptions
    interval = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1, **options: Any) -> None:
        o = self.configure(options)
        self.warmup_steps, self.total_steps = o.warmup_steps, o.total_steps
        self.warmup_start_factor, self.eta_min = o.warmup_start_factor, o.eta_min
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only (not the options object): ``torch.load(weights_only=True)`` reads it."""
        return {k: v for k, v in vars(self).items() if k not in ("optimizer", "opts")}

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            factor = self.warmup_start_factor + (1 - self.warmup_start_factor) * step / self.warmup_steps
            return [base * factor for base in self.base_lrs]
        if self.total_steps is None:  # not filled in yet (the task does it right after construction)
            if step > self.warmup_steps:
                raise ConfigError("scheduler.total_steps=null: the number of optimizer steps is unknown for this "
                                  "train loader (no length); set scheduler.total_steps or trainer.max_steps")
            return list(self.base_lrs)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]
