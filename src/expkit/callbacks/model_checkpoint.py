"""The run's checkpoint files: ``last.ckpt``, ``best.ckpt`` and the top k by a monitored metric.

Checkpoints are written at each validation inside fit (epoch ends, and the points of
``trainer.val_check_interval``) and every N optimizer steps. ``best.ckpt`` is always the
best so far; with ``save_top_k`` > 1 (or -1: all) the k best are also kept under names
that say where they come from, ``epoch=3-step=120-val_acc=0.9125.ckpt``, and a file that
falls out of the top k is deleted.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from expkit.callbacks.monitoring import require_at_sanity_check, require_metric
from expkit.callbacks.options import ModelCheckpointOptions
from expkit.engine import checkpoint as ckpt
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
        self.best_step: int | None = None
        self.best_model_path: str | None = None
        # The kept files, best first: {"file": name in dirpath, "score", "epoch", "step"}. Names only:
        # a copied or moved run directory resumes with its own files.
        self.top_k: list[dict[str, Any]] = []
        self._pending: float | None = None  # score of the validation just run, not yet judged

    @property
    def keeps_named_files(self) -> bool:
        return self.opts.save_top_k == -1 or self.opts.save_top_k > 1

    def _better(self, score: float, than: float | None) -> bool:
        if math.isnan(score):
            return False
        return than is None or (score > than if self.mode == "max" else score < than)

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

    def on_mid_epoch_validation_end(self, trainer: Any, task: Any) -> None:
        self._save(trainer, last=self.opts.save_last)

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        n = self.opts.every_n_train_steps
        if n and trainer.optimizer_stepped and trainer.global_step % n == 0:
            trainer.save_checkpoint(self.dirpath / LAST)

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        self._save(trainer, last=self.opts.save_last and (trainer.epoch + 1) % self.opts.every_n_epochs == 0)

    def _save(self, trainer: Any, last: bool) -> None:
        """Judge the pending validation, then write every file that gets this state at once."""
        pending, self._pending = self._pending, None
        paths: list[Path] = []
        evicted: list[str] = []
        if pending is not None and self.opts.save_top_k != 0:
            if self._better(pending, self.best_score):
                self.best_score, self.best_epoch, self.best_step = pending, trainer.epoch, trainer.global_step
                self.best_model_path = str(self.dirpath / BEST)
                paths.append(Path(self.best_model_path))
            if self.keeps_named_files:
                name, evicted = self._rank(pending, trainer.epoch, trainer.global_step)
                if name is not None:
                    paths.append(self.dirpath / name)
        if last:
            paths.append(self.dirpath / LAST)
        epoch, step = trainer.epoch, trainer.global_step

        def announce(path: Path) -> None:  # on the writer thread, once the file is in place
            if path.name == BEST:
                log.info("epoch %d, step %d: %s=%.4f is the best so far, saved %s", epoch, step, self.monitor,
                         pending, path)

        if paths:  # these files hold the same state: serialize it once
            trainer.save_checkpoint(*paths, on_saved=announce)
        if evicted and trainer.is_global_zero:
            ckpt.wait_for_saves()  # an evicted file may still be on its way to the disk
            for name in evicted:
                (self.dirpath / name).unlink(missing_ok=True)

    def _rank(self, score: float, epoch: int, step: int) -> tuple[str | None, list[str]]:
        """Enter a validation into the top k: (its file name or None, the names that fall out)."""
        k = self.opts.save_top_k
        if math.isnan(score) or (k != -1 and len(self.top_k) >= k
                                 and not self._better(score, self.top_k[-1]["score"])):
            return None, []
        name = f"epoch={epoch}-step={step}-{self.monitor.replace('/', '_')}={score:.4f}.ckpt"
        self.top_k = [e for e in self.top_k if e["file"] != name]  # a re-run of the same step replaces it
        position = next((i for i, e in enumerate(self.top_k) if self._better(score, e["score"])), len(self.top_k))
        self.top_k.insert(position, {"file": name, "score": score, "epoch": epoch, "step": step})
        evicted = [] if k == -1 else [e["file"] for e in self.top_k[k:]]
        self.top_k = self.top_k if k == -1 else self.top_k[:k]
        return name, evicted

    @property
    def best_k_models(self) -> dict[str, float]:
        """The kept top-k files (paths in this run directory) and their scores, best first."""
        return {str(self.dirpath / e["file"]): e["score"] for e in self.top_k}

    def state_dict(self) -> dict[str, Any]:
        """File names only: a copied or moved run directory resumes with its own."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_step": self.best_step,
                "best_model_file": BEST if self.best_model_path is not None else None,
                "top_k": [dict(e) for e in self.top_k]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_step = state.get("best_step")
        name = state.get("best_model_file") or (Path(state["best_model_path"]).name
                                                if state.get("best_model_path") else None)
        self.best_model_path = str(self.dirpath / name) if name else None
        self.top_k = [dict(e) for e in state.get("top_k", [])]
