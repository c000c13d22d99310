"""The trial's side of pruning: report the optimized metric after every validation, stop
when the study's pruner says so.

Added to a run by the hparams_search configs (``callbacks.optuna_pruning``). It is a no-op
unless the job is a trial of ``hydra/sweeper=expkit_optuna`` (``hydra.sweeper.trial`` set),
so the same config also trains alone. It opens the trial in the sweep's storage, wherever
the launcher runs the job, and uses the pruner configured in ``hydra.sweeper.pruner``.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from expkit.engine import Callback
from expkit.sweep.objective import EPOCHS_METRIC, LAST_VALUE_METRIC, PRUNED_METRIC

log = logging.getLogger(__name__)


def _open_trial() -> Any:
    """This job's Optuna trial, or None when the job is not one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    number = sweeper.get("trial")
    if number is None or "pruner" not in sweeper:
        return None
    import optuna
    from hydra.utils import instantiate

    from expkit.sweep.study import open_storage

    study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(sweeper.storage),
                              pruner=instantiate(sweeper.pruner))
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.trial.Trial(study, trial_id)


class OptunaPruning(Callback):
    """Reports ``monitor`` at step = epoch; on a prune, stops at the end of this epoch
    (``last.ckpt`` is saved as always) and marks the run pruned."""

    def __init__(self, monitor: Any = "val/acc") -> None:
        self.monitor = monitor
        self._trial: Any = None
        self._opened = False

    def _trial_or_none(self, trainer: Any) -> Any:
        if not self._opened:
            self._opened = True
            from expkit.engine import distributed as dist

            if not isinstance(self.monitor, str):
                log.info("several objectives: Optuna cannot prune, trials run to their end")
            elif dist.world_size() > 1:
                log.warning("pruning is off under DDP (every rank would have to agree to stop)")
            else:
                self._trial = _open_trial()
        return self._trial

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        trial = self._trial_or_none(trainer)
        if trial is None:
            return
        epoch = int(trainer.epoch)
        value = trainer.callback_metrics.get(self.monitor)
        row = {EPOCHS_METRIC: float(epoch + 1), PRUNED_METRIC: 0.0}
        if value is not None and math.isfinite(float(value)):  # a NaN loss stops the run by itself
            trial.report(float(value), step=epoch)
            row[LAST_VALUE_METRIC] = float(value)
            if trial.should_prune():
                from expkit.sweep.study import PRUNED_ATTR

                trial.set_user_attr(PRUNED_ATTR, epoch)
                row[PRUNED_METRIC] = 1.0
                trainer.should_stop = True
                log.info("trial %d pruned after epoch %d (%s=%.4f): stopping", trial.number, epoch, self.monitor,
                         value)
        _log(trainer, row)


def _log(trainer: Any, row: dict[str, float]) -> None:
    """Into the run's metrics (metrics.json, summary.csv) and its TensorBoard scalars, whose
    last values TensorBoard's HParams tab shows next to the trial's parameters."""
    if hasattr(trainer, "log_metrics"):
        trainer.log_metrics(row)
    else:
        trainer.callback_metrics.update(row)
