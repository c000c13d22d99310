"""The training engine: fit, validate and test loops with no framework underneath.

Read it top to bottom: ``fit`` runs epochs, ``_run_epoch`` trains one and validates,
``_train_epoch`` walks its batches, ``_training_step`` is one step in the order it happens.
The engineering lives in small modules: ``runtime`` (device, precision, DDP, compile),
``guard`` (non-finite losses), ``preemption`` (signals), ``state`` (what a checkpoint
holds), ``metrics`` (exact epoch means), ``loaders``, ``val_check``. No Hydra here; the
options are ``expkit.engine.options.TrainerOptions``:

    trainer = Trainer(max_epochs=5, callbacks=[ModelCheckpoint(dirpath="ckpts")])
    trainer.fit(task, datamodule); trainer.test(task, datamodule, ckpt_path="best")
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from expkit.engine import checkpoint as ckpt
from expkit.engine import distributed as dist
from expkit.engine import state
from expkit.engine.callback import Callback, CheckpointCallback
from expkit.engine.guard import NonFiniteGuard, NonFiniteLossError
from expkit.engine.loaders import accumulation_plan, as_loader, batch_limit, describe_batches, planned_steps
from expkit.engine.metrics import MeanAccumulator, TrainMeters, with_derived
from expkit.engine.options import TrainerOptions
from expkit.engine.preemption import Preempted, PreemptionHandler
from expkit.engine.runtime import Runtime
from expkit.engine.val_check import ValCheck, step_ends
from expkit.options import Configurable

log = logging.getLogger(__name__)


class Trainer(Configurable):
    """Runs a ``Task`` on a datamodule. Options: ``TrainerOptions`` (read as ``trainer.max_epochs``)."""

    Options = TrainerOptions

    def __init__(self, callbacks: Iterable[Callback] | None = None, logger: Any | None = None,
                 **options: Any) -> None:
        self.configure(options)
        self.callbacks: list[Callback] = list(callbacks or [])
        if self.opts.fast_dev_run:  # one batch of each split, one epoch, nothing saved
            self.opts = dataclasses.replace(self.opts, max_epochs=1, num_sanity_val_steps=0, limit_train_batches=1,
                                            limit_val_batches=1, limit_test_batches=1)
            self.callbacks = [c for c in self.callbacks if not isinstance(c, CheckpointCallback)]
        found = [c for c in self.callbacks if isinstance(c, CheckpointCallback)]
        self.checkpoint_callback: CheckpointCallback | None = found[0] if found else None
        self.logger = logger
        self.runtime = Runtime(self.opts)
        # Loop state: what a checkpoint records and a resume restores (see ``state``).
        self.epoch = self.global_step = 0
        self.validated_step = -1  # global step of the last validation in fit (none twice at one step)
        self.epoch_finished = False  # the current epoch's end-of-epoch work is done
        self.should_stop = False  # set by callbacks (early stopping)
        self.optimizer_stepped = False  # the batch just trained ended with an optimizer step
        self.callback_metrics: dict[str, float] = {}
        self.last_checkpoint_path: str | None = None
        self.stage, self.fitting = "idle", False  # fitting: inside fit (not a standalone validate/test)
        self.task: Any = None  # and below: what the current fit works with
        self.optimizer, self.scheduler, self.scheduler_interval = None, None, "epoch"  # from the task
        self.train_loader = self.val_loader = None  # type: Any
        self.config: dict[str, Any] | None = None
        self.logged: dict[str, float] | None = None  # what log_metrics saw during a standalone test/validate
        self.meters, self.guard, self.preemption = TrainMeters(), NonFiniteGuard(), PreemptionHandler()

    def __getattr__(self, name: str) -> Any:  # trainer.max_epochs etc.: the options, read-only
        if name != "opts" and "opts" in vars(self) and hasattr(self.opts, name):
            return getattr(self.opts, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------- fit
    def fit(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None,
            config: dict[str, Any] | None = None) -> None:
        """Train ``task`` on ``datamodule``; ``ckpt_path`` resumes exactly where that checkpoint stopped."""
        self.config = config
        self._attach(task)
        datamodule.setup("fit")
        self.train_loader, self.val_loader = self._loader(datamodule, "train"), self._loader(datamodule, "val")
        o = self.opts  # per-step schedules (warmup_cosine) read the run's length:
        task.planned_steps = planned_steps(self.train_loader, o.limit_train_batches, o.accumulate_grad_batches,
                                           o.max_epochs, o.max_steps)
        self.optimizer, self.scheduler, self.scheduler_interval = task.configure_optimizers()
        if dist.is_rank_zero() and (batches := describe_batches(self.train_loader, o.accumulate_grad_batches)):
            log.info("%s", batches)
        if ckpt_path is not None:
            state.restore(self, ckpt.load(ckpt_path, map_location=self.device), ckpt_path)
        self.guard = NonFiniteGuard()
        if self.logger is not None and dist.is_rank_zero():
            self.logger.start(self.global_step, resumed=ckpt_path is not None)
        self.fitting = True
        try:
            with self.runtime.wrapped(task), self.preemption:
                self._call("on_fit_start")
                if ckpt_path is None and self.opts.num_sanity_val_steps > 0:
                    self.stage = "sanity"
                    sanity = self._evaluate(task, self.val_loader, "val", self.opts.num_sanity_val_steps, hooks=False)
                    self._call("on_sanity_check_end", sanity)  # a monitored metric it lacks fails now
                while not (self.epoch >= self.opts.max_epochs or self.should_stop or self._max_steps_reached()):
                    if self.epoch_finished:  # restored at an epoch boundary
                        self.epoch, self.epoch_finished = self.epoch + 1, False
                        continue
                    self._run_epoch(task)
                self._call("on_fit_end")
        except BaseException as e:
            self._call("on_exception", e)
            raise
        finally:
            self.stage, self.fitting = "idle", False
            ckpt.wait_for_saves()
            if self.logger is not None and dist.is_rank_zero():
                self.logger.flush()

    def _run_epoch(self, task: Any) -> None:
        """Train one epoch, log its means, step an epoch scheduler, validate when due."""
        self.stage = "train"
        self.train_loader.set_epoch(self.epoch)
        self._call("on_train_epoch_start")
        completed = self._train_epoch(task)
        if completed:
            train = {f"train/{k}": v for k, v in with_derived(task, self.meters.epoch_means()).items()}
            self._check_finite()
            self.log_metrics({**train, "epoch": float(self.epoch)})
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
        # else: max_steps stopped the epoch part-way. Its metric sums and the epoch's scheduler
        # step stay pending, so a resume with a larger max_steps finishes it exactly.
        last_epoch = self.epoch + 1 == self.opts.max_epochs or not completed
        due = (self.epoch + 1) % self.opts.check_val_every_n_epoch == 0 or last_epoch
        if due and self.validated_step != self.global_step:  # not again after an in-epoch validation
            self._validate()
        self.epoch_finished = completed
        self._call("on_train_epoch_end")
        if self.preemption.requested(self.global_step, self.opts.log_every_n_steps, at_epoch_end=True):
            self._preempt()

    def _train_epoch(self, task: Any) -> bool:
        """Train on the rest of the current epoch; False if ``max_steps`` stopped it early."""
        task.train()
        self.meters.restart_clock()  # samples/s counts training only, not validation or saving
        loader = self.train_loader
        n_batches = batch_limit(self.opts.limit_train_batches, loader)
        plan = accumulation_plan(loader, n_batches, self.opts.accumulate_grad_batches)
        val_check = ValCheck(self.opts.val_check_interval, n_batches, step_ends(plan))
        # Decided once per epoch, so the per-batch path does no repeated Python work:
        # in-memory batches already sit on the device; callbacks without the hook are skipped.
        move = getattr(loader, "device", None) != self.device or self.opts.channels_last
        batch_hooks = self._overriding("on_train_batch_end")
        batches = zip(range(loader.position, n_batches), loader) if n_batches is not None \
            else enumerate(loader, start=loader.position)  # the range stops first: never past the limit
        for batch_idx, batch in batches:
            weight, step_now = plan[batch_idx] if plan is not None else (1.0, True)
            result = self._training_step(task, self.runtime.to_device(batch) if move else batch, weight, step_now)
            for hook in batch_hooks:
                hook(self, task, result, batch, batch_idx)
            if step_now:
                ckpt.raise_if_save_failed()  # a failed background write stops the run here, not at its end
                if val_check.due(batch_idx, self.global_step):
                    self._validate()
                    self._call("on_mid_epoch_validation_end")  # ModelCheckpoint saves here
                    self.meters.restart_clock()
                if self.should_stop or self._max_steps_reached() or self.preemption.requested(
                        self.global_step, self.opts.log_every_n_steps, at_epoch_end=False):
                    if self.preemption.received:
                        self._preempt()
                    break
        else:
            self.optimizer_stepped = False
            return True
        self.optimizer_stepped = False  # stopped by max_steps: complete only if it was the last batch
        return n_batches is not None and loader.position >= n_batches

    def _training_step(self, task: Any, batch: Any, weight: float, step_now: bool) -> Any:
        """One micro-batch: forward under autocast, backward, and after the last micro-batch of an
        accumulation cycle the optimizer step (clipped), the scheduler step and the step log."""
        with self.runtime.no_sync(task, syncing=step_now):
            with self.runtime.autocast():
                result = task.training_step(batch)
            # Without accumulation the weight is exactly 1: no multiply, no extra autograd node.
            self.runtime.backward(result.loss if weight == 1.0 else result.loss * weight)
        self.meters.add(result.metrics, result.batch_size)
        self.guard.track(self.global_step, result.loss)
        self.optimizer_stepped = step_now
        if step_now:
            self.runtime.optimizer_step(self.optimizer, (self.global_step + 1) % self.opts.log_every_n_steps == 0)
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            self.global_step += 1
            if self.global_step % self.opts.log_every_n_steps == 0:
                window = {f"train/{k}_step": v for k, v in with_derived(task, self.meters.window_means()).items()}
                self._check_finite()
                self.log_metrics({**window, **self.meters.throughput(), **self.runtime.grad_norm_metrics()})
        if self.guard.full:  # no log for a long while: check now to bound memory
            self._check_finite()
        return result

    def _validate(self) -> None:
        """Validate inside fit (its hooks run: checkpoints, early stopping, pruning), then train on."""
        stage, self.stage = self.stage, "val"
        self._evaluate(self.task, self.val_loader, "val", batch_limit(self.opts.limit_val_batches, self.val_loader))
        self.stage, self.validated_step = stage, self.global_step
        self.task.train(stage == "train")

    def _max_steps_reached(self) -> bool:
        return self.opts.max_steps != -1 and self.global_step >= self.opts.max_steps

    def _check_finite(self) -> None:
        self.guard.check(self.epoch, self.last_checkpoint_path)

    def _preempt(self) -> None:
        """Save last.ckpt, wait until it is on disk, hand the signal on, stop."""
        path = self.checkpoint_dir / "last.ckpt"
        ckpt.raise_if_save_failed()
        self.save_checkpoint(path)
        ckpt.wait_for_saves()  # on disk before anyone may end this process
        log.warning("%s received: saved %s at epoch %d, step %d; resume with ckpt_path=%s",
                    self.preemption.received, path, self.epoch, self.global_step, path)
        self.preemption.forward()
        raise Preempted(self.preemption.received or "signal", str(path))

    # ------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _evaluate(self, task: Any, loader: Any, stage: str, limit: int | None, hooks: bool = True) -> dict[str, float]:
        """Exact means of ``stage``'s metrics over ``limit`` batches (all ranks); logged with ``hooks``."""
        task.eval()
        if hooks and stage == "val":
            self._call("on_validation_start")
        loader.restart()
        metrics = MeanAccumulator()
        step = task.validation_step if stage == "val" else task.test_step
        batches = zip(range(limit), loader) if limit is not None else enumerate(loader)
        with self.runtime.gathered(task):  # FSDP: ranks may run different numbers of batches
            for batch_idx, batch in batches:
                batch = self.runtime.to_device(batch)
                with self.runtime.autocast():
                    result = step(batch)
                metrics.update(result.metrics, result.batch_size)
                if hooks and stage == "val":
                    self._call("on_validation_batch_end", result, batch, batch_idx)
        values = {f"{stage}/{k}": v for k, v in with_derived(task, metrics.compute()).items()}
        if hooks:
            self.log_metrics(values)
            self._call("on_validation_end" if stage == "val" else "on_test_end")
        task.train(self.stage == "train")
        return values

    def validate(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None) -> dict[str, float]:
        return self._evaluate_standalone(task, datamodule, "val", ckpt_path)

    def test(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None) -> dict[str, float]:
        """Evaluate on the test split; ``ckpt_path='best'`` loads the checkpoint callback's best first."""
        return self._evaluate_standalone(task, datamodule, "test", ckpt_path)

    def _evaluate_standalone(self, task: Any, datamodule: Any, stage: str,
                             ckpt_path: str | os.PathLike | None) -> dict[str, float]:
        if self.task is not task:
            self._attach(task)
        datamodule.setup(stage if stage == "test" else "fit")
        if ckpt_path == "best":
            ckpt_path = self.best_model_path
            if ckpt_path is None:
                log.warning("test(ckpt_path='best'): no best checkpoint was saved; using the current weights")
        if ckpt_path is not None:
            state.load_weights(task.model, ckpt.load(ckpt_path, map_location=self.device), ckpt_path)
            log.info("%s with weights from %s", stage, ckpt_path)
        loader = self._loader(datamodule, stage)
        self.stage, self.logged = stage, {}
        limit = self.opts.limit_val_batches if stage == "val" else self.opts.limit_test_batches
        try:  # everything logged meanwhile (callbacks' own test/* metrics too), then the split's means
            values = self._evaluate(task, loader, stage, batch_limit(limit, loader))
            return {**self.logged, **values}
        finally:
            self.stage, self.logged = "idle", None
            if self.logger is not None and dist.is_rank_zero():
                self.logger.flush()

    # ----------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run bit for bit (see ``expkit.engine.state``)."""
        return state.capture(self)

    def save_checkpoint(self, path: str | os.PathLike, *copies: str | os.PathLike,
                        on_saved: Callable[[Path], None] | None = None) -> str:
        """Write a checkpoint atomically (see ``expkit.engine.state.save``): ``copies`` get the same
        bytes; ``on_saved(path)`` runs once each file is renamed into place (log "saved" there)."""
        self._check_finite()
        return state.save(self, path, *copies, on_saved=on_saved)

    @property
    def checkpoint_dir(self) -> Path:
        """The checkpoint callback's folder, else ``<default_root_dir>/checkpoints``."""
        if self.checkpoint_callback is not None:
            return Path(self.checkpoint_callback.dirpath)
        return Path(self.opts.default_root_dir) / "checkpoints"

    @property
    def best_model_path(self) -> str | None:
        return self.checkpoint_callback.best_model_path if self.checkpoint_callback is not None else None

    @property
    def best_epoch(self) -> int | None:
        return self.checkpoint_callback.best_epoch if self.checkpoint_callback is not None else None

    # ------------------------------------------------------------- plumbing
    def _attach(self, task: Any) -> None:
        self.runtime.setup(task)
        self.task = task

    def _loader(self, datamodule: Any, split: str) -> Any:
        return as_loader(getattr(datamodule, f"{split}_loader")(device=self.device, rank=dist.rank(),
                                                                world_size=dist.world_size()))

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, self.task, *args)

    def _overriding(self, hook: str) -> list[Any]:
        """Bound ``hook`` methods of the callbacks that implement it (not the base no-op)."""
        base = getattr(Callback, hook)
        return [getattr(c, hook) for c in self.callbacks
                if getattr(type(c), hook, None) is not base or hook in vars(c)]

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record metrics for callbacks and send them to the logger (rank 0 only)."""
        self.callback_metrics.update(metrics)
        if self.logged is not None:
            self.logged.update(metrics)
        if self.logger is not None and dist.is_rank_zero():
            self.logger.log_metrics(metrics, self.global_step if step is None else step)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.runtime.scaler

    @property
    def is_global_zero(self) -> bool:
        return dist.is_rank_zero()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else float("nan")
