"""Progress: a tqdm bar per epoch on a terminal, plain log lines in a cluster log.

The bar shows the loss, the latest validation metrics, samples/s and the ETA.
It refreshes at most every ``refresh_seconds``, so reading the loss (a host
sync on GPU) never happens per step.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

from expkit.callbacks.options import ProgressBarOptions
from expkit.engine.callback import Callback
from expkit.options import Configurable

log = logging.getLogger("expkit.progress")


class ProgressBar(Callback, Configurable):
    Options = ProgressBarOptions

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        self.refresh_seconds, self.log_every_n_steps, self.tty = opts.refresh_seconds, opts.log_every_n_steps, opts.tty
        self._bar: Any = None
        self._last_refresh = 0.0
        self._epoch_start = 0.0
        self._samples = 0
        self._last_loss: Any = None

    def _use_bar(self, trainer: Any) -> bool:
        # The bar draws on stderr (where the logs go too); a redirected stream gets plain lines.
        tty = sys.stdout.isatty() and sys.stderr.isatty() if self.tty is None else self.tty
        return tty and trainer.is_global_zero

    def _val_summary(self, trainer: Any) -> dict[str, str]:
        return {k: f"{v:.4f}" for k, v in sorted(trainer.callback_metrics.items()) if k.startswith("val/")}

    def on_train_epoch_start(self, trainer: Any, task: Any) -> None:
        self._epoch_start, self._samples = time.monotonic(), 0
        self._last_refresh = self._epoch_start
        if self._use_bar(trainer):
            from tqdm.auto import tqdm

            total = len(trainer.train_loader)
            self._bar = tqdm(total=total, initial=trainer.train_loader.position, desc=f"epoch {trainer.epoch}",
                             leave=True, dynamic_ncols=True, mininterval=self.refresh_seconds)

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        self._samples += result.batch_size
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(1)
            self._last_loss = result.metrics["loss"]  # read (a host sync) only when the bar refreshes
            if now - self._last_refresh >= self.refresh_seconds:
                self._last_refresh = now
                self._set_postfix(trainer, now)
        elif (trainer.optimizer_stepped and trainer.global_step % self.log_every_n_steps == 0
              and trainer.is_global_zero):  # cheapest test first: this runs every batch
            rate = self._samples / max(now - self._epoch_start, 1e-9)
            left = (len(trainer.train_loader) - trainer.train_loader.position) * result.batch_size / max(rate, 1e-9)
            log.info("epoch %d step %d: loss %.4f, %.0f samples/s, epoch ETA %.0fs", trainer.epoch,
                     trainer.global_step, result.metrics["loss"].item(), rate, left)

    def _set_postfix(self, trainer: Any, now: float) -> None:
        rate = self._samples / max(now - self._epoch_start, 1e-9)
        loss = {"loss": f"{self._last_loss.item():.4f}"} if self._last_loss is not None else {}
        self._bar.set_postfix(**loss, **self._val_summary(trainer), samples_s=f"{rate:.0f}", refresh=False)

    def on_validation_start(self, trainer: Any, task: Any) -> None:
        """Close the bar before validation, so log lines of the epoch's end never land inside it."""
        if self._bar is not None:
            self._set_postfix(trainer, time.monotonic())
            self._bar.close()
            self._bar = None

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        metrics = {k: f"{v:.4f}" for k, v in sorted(trainer.callback_metrics.items())
                   if k.startswith(("train/", "val/")) and not k.endswith("_step")}
        if self._bar is not None:
            self._bar.set_postfix(**metrics, refresh=False)
            self._bar.close()
            self._bar = None
        if trainer.is_global_zero:
            rate = self._samples / max(time.monotonic() - self._epoch_start, 1e-9)
            log.info("epoch %d done: %s (%.0f samples/s)", trainer.epoch,
                     ", ".join(f"{k}={v}" for k, v in metrics.items()), rate)

    def on_exception(self, trainer: Any, task: Any, exception: BaseException) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
