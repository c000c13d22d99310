"""Save ``last.ckpt`` every epoch (and every N steps) and ``best.ckpt`` by a monitored metric."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from expkit.callbacks.monitoring import require_at_sanity_check, require_metric
from expkit.callbacks.options import ModelCheckpointOptions
from expkit.engine.callback import CheckpointCallback
from expkit.options import Configurable

log = logging.getLogger(__name__)

BEST, LAST = "best.ckpt", "last.ckpt"


class ModelCheckpoint(CheckpointCallback, Configurable):
    """The run's checkpoint files. The trainer finds it by type (``CheckpointCallback``)
    and takes its folder, best checkpoint and best epoch from it."""

    Options = ModelCheckpointOptions

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        self.dirpath = Path(opts.dirpath)
        self.monitor, self.mode = opts.monitor, opts.mode
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

    def on_sanity_check_end(self, trainer: Any, task: Any, metrics: dict[str, float]) -> None:
        require_at_sanity_check("callbacks.model_checkpoint.monitor", self.monitor, metrics)

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        if trainer.fitting and self.monitor is not None:
            require_metric("callbacks.model_checkpoint.monitor", self.monitor, trainer.callback_metrics)
            self._pending = trainer.callback_metrics[self.monitor]

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        n = self.opts.every_n_train_steps
        if n and trainer.optimizer_stepped and trainer.global_step % n == 0:
            trainer.save_checkpoint(self.dirpath / LAST)

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        pending, self._pending = self._pending, None
        paths, epoch = [], trainer.epoch
        if pending is not None and self._improved(pending):
            self.best_score, self.best_epoch = pending, epoch
            self.best_model_path = str(self.dirpath / BEST)
            paths.append(self.best_model_path)
        if self.opts.save_last and (epoch + 1) % self.opts.every_n_epochs == 0:
            paths.append(self.dirpath / LAST)

        def announce(path: Path) -> None:  # on the writer thread, once the file is in place
            if path.name == BEST:
                log.info("epoch %d: %s=%.4f is the best so far, saved %s", epoch, self.monitor, pending, path)

        if paths:  # best and last of one epoch hold the same state: serialize it once
            trainer.save_checkpoint(*paths, on_saved=announce)

    def state_dict(self) -> dict[str, Any]:
        """The best file by name only: a copied or moved run directory resumes with its own."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_model_file": BEST if self.best_model_path is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        name = state.get("best_model_file") or (Path(state["best_model_path"]).name
                                                if state.get("best_model_path") else None)
        self.best_model_path = str(self.dirpath / name) if name else None
