"""Profile a few training steps with ``torch.profiler`` and write a TensorBoard trace.

The trace (``*.pt.trace.json``) lands in ``dirpath``, by default the run's
``profiler`` folder: open it in TensorBoard's PyTorch Profiler tab
(``pip install torch-tb-profiler``) or drop the file on https://ui.perfetto.dev.
Profiles rank 0 only; the schedule skips ``wait`` steps, warms up ``warmup`` and
records ``active`` steps once, then the profiler stops and training runs at full speed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from expkit.engine import distributed as dist
from expkit.callbacks.options import ProfilerOptions
from expkit.engine.callback import Callback
from expkit.options import Configurable

log = logging.getLogger(__name__)


class Profiler(Callback, Configurable):
    Options = ProfilerOptions

    def __init__(self, **options: Any) -> None:
        opts = self.configure(options)
        self.dirpath = Path(opts.dirpath)
        self.wait, self.warmup, self.active = opts.wait, opts.warmup, opts.active
        self.record_shapes, self.profile_memory, self.with_stack = opts.record_shapes, opts.profile_memory, opts.with_stack
        self._profiler: Any = None
        self._steps = 0
        self._done = False

    def on_train_epoch_start(self, trainer: Any, task: Any) -> None:
        if self._done or self._profiler is not None or not dist.is_rank_zero():
            return
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        activities = [ProfilerActivity.CPU]
        if trainer.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        self._profiler = profile(
            activities=activities,
            schedule=schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1),
            on_trace_ready=tensorboard_trace_handler(str(self.dirpath)),
            record_shapes=self.record_shapes, profile_memory=self.profile_memory, with_stack=self.with_stack)
        self._profiler.start()
        self._steps = 0
        log.info("profiling %d training steps into %s (torch %s)", self.active, self.dirpath, torch.__version__)

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if self._profiler is None:
            return
        self._profiler.step()
        self._steps += 1
        if self._steps >= self.wait + self.warmup + self.active:
            self._stop()

    def on_train_epoch_end(self, trainer: Any, task: Any) -> None:
        self._stop()  # an epoch shorter than the schedule still gets its trace

    def on_exception(self, trainer: Any, task: Any, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._profiler is not None:
            self._profiler.stop()
            self._profiler = None
            self._done = True
            traces = sorted(self.dirpath.glob("*.pt.trace.json"))
            log.info("profiler trace: %s", traces[-1] if traces else f"none written in {self.dirpath}")
