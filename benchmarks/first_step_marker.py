"""A callback for benchmarks/startup.py: records the wall-clock time of the first
finished training step, then ends the process (the rest of the run is not measured).

Added from the command line only, never by a config in conf/:
    PYTHONPATH=benchmarks python train.py \
        +callbacks.first_step._target_=first_step_marker.FirstStepMarker +callbacks.first_step.path=/tmp/t
"""
from __future__ import annotations

import os
import time
from typing import Any

from expkit.engine import Callback


class FirstStepMarker(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if trainer.optimizer_stepped:
            with open(self.path, "w") as f:
                f.write(repr(time.time()))
            os._exit(0)  # the first step is all this run is for
