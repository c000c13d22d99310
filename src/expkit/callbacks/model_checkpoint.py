"""Save ``last.ckpt`` every epoch (and every N steps) and ``best.ckpt`` by a monitored metric."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from expkit.engine.callback import Callback

log = logging.getLogger(__name__)


class ModelCheckpoint(Callback):
    def __init__(self, dirpath: str, monitor: str | None = "val/acc", mode: str = "max", save_last: bool = True,
                 every_n_train_steps: int | None = None, every_n_epochs: int = 1) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: must be 'min' or 'max'")
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps={every_n_train_steps}: must be null or >= 1")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs}: must be >= 1")
        self.dirpath = Path(dirpath)
        self.monitor, self.mode, self.save_last = monitor, mode, save_last
        self.every_n_train_steps, self.every_n_epochs = every_n_train_steps, every_n_epochs
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_model_path: str | None = None
        self._pending: float | None = None  # score of this epoch's validation, not yet judged

    def _improved(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        return score > self.best_score if self.mode == "max" else score < self.best_score

    def on_fit_start(self, trainer: Any, task: Any) -> None:
        """Remove temporary files that a process killed in the middle of a save left behind
        (the checkpoints themselves are never partial: see ``engine.checkpoint.save_atomic``)."""
        if trainer.is_global_zero and self.dirpath.is_dir():
            for leftover in self.dirpath.glob(".*.ckpt.*.tmp"):
                leftover.unlink(missing_ok=True)

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        if trainer.fitting and self.monitor is not None:
            if self.monitor not in trainer.callback_metrics:
                raise KeyError(f"ModelCheckpoint monitor={self.monitor!r} is not a logged metric; "
                               f"available: {', '.join(sorted(trainer.callback_metrics))}")
            self._pending = trainer.callback_metrics[self.monitor]

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        n = self.every_n_train_steps
        if n and trainer.optimizer_stepped and trainer.global_step % n == 0 and not trainer.fast_dev_run:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        if trainer.fast_dev_run:
            return
        pending, self._pending = self._pending, None
        paths = []
        if pending is not None and self._improved(pending):
            self.best_score, self.best_epoch = pending, trainer.epoch
            self.best_model_path = str(self.dirpath / "best.ckpt")
            paths.append(self.best_model_path)
            log.info("epoch %d: %s=%.4f is the best so far, saved %s", trainer.epoch, self.monitor, pending,
                     self.best_model_path)
        if self.save_last and (trainer.epoch + 1) % self.every_n_epochs == 0:
            paths.append(self.dirpath / "last.ckpt")
        if paths:  # best and last of one epoch hold the same state: serialize it once
            trainer.save_checkpoint(*paths)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_model_path": self.best_model_path}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_model_path = state["best_model_path"]
