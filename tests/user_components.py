"""A researcher's own components, for tests that run ``train.py`` with them
(``PYTHONPATH=tests``, ``model._target_=user_components.BrokenModel``).

``HangAt`` waits in a chosen hook until the test has signalled the process: it writes
``marker`` when it gets there, then sleeps (signals interrupt the sleep).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from expkit.engine.callback import Callback


class BrokenModel(torch.nn.Module):
    """A model whose constructor has a bug."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        raise ValueError("boom")


class HangAt(Callback):
    """Stops in ``hook`` (``on_fit_start``, ``on_train_batch_end``, ``on_test_end``) for ``seconds``
    (under DDP on ``rank`` only, when given: a rank that stops answering; in ``on_train_batch_end``
    at training step ``step`` only, when given: a run that is still running, with a checkpoint)."""

    def __init__(self, hook: str, marker: str, seconds: float = 60.0, rank: int | None = None,
                 step: int | None = None) -> None:
        self.hook, self.marker, self.seconds, self.rank, self.step = hook, Path(marker), seconds, rank, step

    def _hang(self, hook: str) -> None:
        from expkit.engine import distributed as dist

        if self.rank is not None and dist.rank() != self.rank:
            return
        if hook == self.hook and not self.marker.exists():
            self.marker.write_text("here")
            time.sleep(self.seconds)

    def on_fit_start(self, trainer: Any, task: Any) -> None:
        self._hang("on_fit_start")

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if self.step is None or trainer.global_step == self.step:
            self._hang("on_train_batch_end")

    def on_test_end(self, trainer: Any, task: Any) -> None:
        self._hang("on_test_end")


class SlowModel(torch.nn.Module):
    """Building it takes a while (the test signals the run meanwhile)."""

    def __init__(self, marker: str, seconds: float = 60.0, **kwargs: Any) -> None:
        super().__init__()
        Path(marker).write_text("here")
        time.sleep(seconds)
