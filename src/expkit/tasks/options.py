"""The tasks' options, defined once (see ``expkit.options``). Torch-free.

Each task declares what it is judged by (``monitor``, ``mode``): the checkpoint callback,
early stopping and ``optimized_metric`` follow ``task.monitor`` / ``task.mode`` by
interpolation, so choosing a task (``task=regression``) chooses them too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expkit.options import MODE, Options, number, one_of, option, optional


@dataclass
class TaskOptions(Options):
    """The base of every task's options (its monitor and mode are classification's)."""

    scheduler_interval: str = option("epoch", one_of("epoch", "step"),
                                     "step the LR scheduler every epoch or every optimizer step")
    norm_bias_weight_decay: Optional[float] = option(
        None, optional(number(0)), "null: the optimizer's weight_decay everywhere; 0: none on norms and biases")
    monitor: str = option("val/acc", doc="the metric best.ckpt, early stopping and sweeps follow")
    mode: str = option("max", MODE, "max | min: whether a larger monitored value is better")


@dataclass
class RegressionOptions(TaskOptions):
    monitor: str = option("val/loss", doc="the metric best.ckpt, early stopping and sweeps follow")
    mode: str = option("min", MODE, "max | min: whether a larger monitored value is better")


@dataclass
class LanguageModelOptions(TaskOptions):
    monitor: str = option("val/loss", doc="the metric best.ckpt, early stopping and sweeps follow")
    mode: str = option("min", MODE, "max | min: whether a larger monitored value is better")


@dataclass
class ClassificationOptions(TaskOptions):
    label_smoothing: float = option(0.0, number(0, maximum=1), "cross-entropy target smoothing (training loss)")
