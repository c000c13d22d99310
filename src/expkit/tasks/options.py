"""The tasks' options, defined once (see ``expkit.options``). Torch-free.

Each task declares what it is judged by (``monitor``, ``mode``): the checkpoint callback,
early stopping and ``optimized_metric`` follow ``task.monitor`` / ``task.mode`` by
interpolation, so choosing a task (``task=regression``) chooses them too.
"""
from __future__ import annotations

from dataclasses import dataclass

from expkit.options import MODE, Options, one_of, option


@dataclass
class TaskOptions(Options):
    """Classification, and the base of every task's options."""

    scheduler_interval: str = option("epoch", one_of("epoch", "step"),
                                     "step the LR scheduler every epoch or every optimizer step")
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
