"""Log the learning rate as ``lr``: once per epoch, or at every step log for per-step schedules
(``auto``, the default: per step when the scheduler steps per step)."""
from __future__ import annotations

from typing import Any

from expkit.callbacks.options import LearningRateMonitorOptions
from expkit.engine.callback import Callback
from expkit.options import Configurable


class LearningRateMonitor(Callback, Configurable):
    """``epoch``: the LR an epoch started with, logged at the epoch's end next to ``train/loss``.

    Nothing is logged when an epoch starts: a run resumed from an end-of-epoch checkpoint
    starts the next epoch again, and would log that step twice.
    """

    Options = LearningRateMonitorOptions

    def __init__(self, **options: Any) -> None:
        self.logging_interval = self.configure(options).logging_interval
        self._epoch_lr: float | None = None  # kept in checkpoints: a mid-epoch resume still logs it

    def on_train_epoch_start(self, trainer: Any, task: Any) -> None:
        if trainer.train_loader.position == 0:  # not when resuming in the middle of the epoch
            self._epoch_lr = trainer.lr

    def _interval(self, trainer: Any) -> str:
        if self.logging_interval != "auto":
            return self.logging_interval
        return "step" if trainer.scheduler is not None and trainer.scheduler_interval == "step" else "epoch"

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        if self._interval(trainer) == "epoch" and self._epoch_lr is not None:
            trainer.log_metrics({"lr": self._epoch_lr})

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if (trainer.optimizer_stepped and self._interval(trainer) == "step"
                and trainer.global_step % trainer.log_every_n_steps == 0):
            trainer.log_metrics({"lr": trainer.lr})

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_lr": self._epoch_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch_lr = state.get("epoch_lr")
