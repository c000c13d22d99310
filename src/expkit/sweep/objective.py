"""What a job returns to a sweeper, and the metrics an Optuna trial adds to a run.

Torch-free and Optuna-free: the runner imports it for every job.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

#: Metrics the pruning callback adds (in metrics.json, summary.csv and TensorBoard's HParams).
PRUNED_METRIC = "trial/pruned"          # 1.0 when the pruner stopped the trial
EPOCHS_METRIC = "trial/epochs"          # epochs trained (up to the last validation)
LAST_VALUE_METRIC = "trial/last_value"  # the last value reported to the study


def was_pruned(metrics: Mapping[str, Any]) -> bool:
    return bool(metrics.get(PRUNED_METRIC))


def objective_value(metrics: Mapping[str, Any], names: Any, worst: float) -> float | list[float]:
    """``optimized_metric`` from the final metrics: one value, or a list for several
    objectives; a missing or NaN value becomes ``worst`` (never NaN to a sweeper)."""
    def one(name: str) -> float:
        value = metrics.get(str(name))
        return worst if value is None or (isinstance(value, float) and math.isnan(value)) else value

    if isinstance(names, str):
        return one(names)
    return [one(n) for n in names]
