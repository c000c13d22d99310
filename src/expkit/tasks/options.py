"""The tasks' options, defined once (see ``expkit.options``). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expkit.options import Options, number, one_of, option, optional


@dataclass
class TaskOptions(Options):
    scheduler_interval: str = option("epoch", one_of("epoch", "step"),
                                     "step the LR scheduler every epoch or every optimizer step")
    norm_bias_weight_decay: Optional[float] = option(
        None, optional(number(0)), "null: the optimizer's weight_decay everywhere; 0: none on norms and biases")


@dataclass
class ClassificationOptions(TaskOptions):
    label_smoothing: float = option(0.0, number(0, maximum=1), "cross-entropy target smoothing (training loss)")
