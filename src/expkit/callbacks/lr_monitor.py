"""Log the learning rate as ``lr``: once per epoch, or at every step log for per-step schedules."""
from __future__ import annotations

from typing import Any

from expkit.engine.callback import Callback


class LearningRateMonitor(Callback):
    def __init__(self, logging_interval: str = "epoch") -> None:
        if logging_interval not in ("epoch", "step"):
            raise ValueError(f"logging_interval={logging_interval!r}: must be 'epoch' or 'step'")
        self.logging_interval = logging_interval

    def on_train_epoch_start(self, trainer: Any, task: Any) -> None:
        if self.logging_interval == "epoch":
            trainer.log_metrics({"lr": trainer.lr})

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if (self.logging_interval == "step" and trainer.optimizer_stepped
                and trainer.global_step % trainer.log_every_n_steps == 0):
            trainer.log_metrics({"lr": trainer.lr})
