"""Stop when a monitored metric has not improved for ``patience`` validations."""
from __future__ import annotations

import logging
import math
from typing import Any

from expkit.callbacks.monitoring import require_at_sanity_check, require_metric
from expkit.callbacks.options import EarlyStoppingOptions
from expkit.engine.callback import Callback
from expkit.options import Configurable

log = logging.getLogger(__name__)


class EarlyStopping(Callback, Configurable):
    Options = EarlyStoppingOptions

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        self.monitor, self.mode, self.patience = opts.monitor, opts.mode, opts.patience
        self.best_score: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_sanity_check_end(self, trainer: Any, task: Any, metrics: dict[str, float]) -> None:
        require_at_sanity_check("callbacks.early_stopping.monitor", self.monitor, metrics)

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        if not trainer.fitting:
            return
        require_metric("callbacks.early_stopping.monitor", self.monitor, trainer.callback_metrics)
        score = trainer.callback_metrics[self.monitor]
        sign = 1.0 if self.mode == "max" else -1.0
        if not math.isnan(score) and (self.best_score is None or sign * (score - self.best_score) > self.opts.min_delta):
            self.best_score, self.wait = score, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            trainer.should_stop = True
            self.stopped_epoch = trainer.epoch
            log.info("early stopping at epoch %d: %s did not improve on %.4f for %d validations",
                     trainer.epoch, self.monitor, self.best_score if self.best_score is not None else float("nan"),
                     self.patience)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.wait, self.stopped_epoch = state["best_score"], state["wait"], state["stopped_epoch"]
