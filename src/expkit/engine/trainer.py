"""The training engine: fit, validate and test loops with no framework underneath.

Read it top to bottom: ``fit`` sets up, restores a checkpoint if given, then runs
``_train_epoch`` and ``_evaluate`` until ``max_epochs`` or ``max_steps``.
Nothing here touches Hydra or OmegaConf; plain Python drives it:

    trainer = Trainer(max_epochs=5, callbacks=[ModelCheckpoint(dirpath="ckpts")])
    trainer.fit(task, datamodule)
    trainer.test(task, datamodule, ckpt_path="best")
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

import expkit
from expkit.engine import checkpoint as ckpt
from expkit.engine import distributed as dist
from expkit.engine.callback import Callback
from expkit.engine.metrics import MeanAccumulator
from expkit.engine.preemption import Preempted, PreemptionHandler
from expkit.engine.seed import set_deterministic

log = logging.getLogger(__name__)

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
ACCELERATORS = ("auto", "cpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before saving bad weights."""


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: {allowed}")


def _limit(limit: int | float | None, available: int) -> int:
    """How many batches of ``available`` to run: all, a count, or a fraction."""
    if limit is None:
        return available
    if isinstance(limit, float) and limit <= 1.0:
        return max(1, int(available * limit)) if available else 0
    return min(int(limit), available)


class Trainer:
    def __init__(
        self,
        max_epochs: int = 10,
        max_steps: int = -1,
        accelerator: str = "auto",
        devices: int = 1,
        strategy: str = "auto",
        precision: str = "32",
        accumulate_grad_batches: int = 1,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str = "norm",
        check_val_every_n_epoch: int = 1,
        num_sanity_val_steps: int = 2,
        log_every_n_steps: int = 50,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        fast_dev_run: bool = False,
        deterministic: bool = False,
        num_threads: int | None = None,
        compile: bool = False,
        channels_last: bool = False,
        matmul_precision: str | None = None,
        cudnn_benchmark: bool = False,
        callbacks: Iterable[Callback] | None = None,
        logger: Any | None = None,
        default_root_dir: str | os.PathLike = ".",
    ) -> None:
        precision = str(precision)
        _check(isinstance(max_epochs, int) and max_epochs >= 1, "max_epochs", max_epochs, "must be an integer >= 1")
        _check(isinstance(max_steps, int) and (max_steps == -1 or max_steps >= 1), "max_steps", max_steps,
               "must be -1 (no limit) or an integer >= 1")
        _check(accelerator in ACCELERATORS, "accelerator", accelerator, f"must be one of {', '.join(ACCELERATORS)}")
        _check(isinstance(devices, int) and devices >= 1, "devices", devices, "must be an integer >= 1")
        _check(strategy in STRATEGIES, "strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
        _check(precision in PRECISIONS, "precision", precision, f"must be one of {', '.join(PRECISIONS)}")
        _check(isinstance(accumulate_grad_batches, int) and accumulate_grad_batches >= 1,
               "accumulate_grad_batches", accumulate_grad_batches, "must be an integer >= 1")
        _check(gradient_clip_val is None or gradient_clip_val > 0, "gradient_clip_val", gradient_clip_val,
               "must be null or > 0")
        _check(gradient_clip_algorithm in ("norm", "value"), "gradient_clip_algorithm", gradient_clip_algorithm,
               "must be 'norm' or 'value'")
        _check(isinstance(check_val_every_n_epoch, int) and check_val_every_n_epoch >= 1,
               "check_val_every_n_epoch", check_val_every_n_epoch, "must be an integer >= 1")
        _check(isinstance(log_every_n_steps, int) and log_every_n_steps >= 1, "log_every_n_steps",
               log_every_n_steps, "must be an integer >= 1")
        _check(num_threads is None or (isinstance(num_threads, int) and num_threads >= 1), "num_threads",
               num_threads, "must be null (torch's default) or an integer >= 1")
        for name, value in (("limit_train_batches", limit_train_batches), ("limit_val_batches", limit_val_batches),
                            ("limit_test_batches", limit_test_batches)):
            _check(value is None or (value > 0), name, value,
                   "must be null, a fraction in (0, 1] or a number of batches >= 1")
        if fast_dev_run:
            max_epochs, num_sanity_val_steps = 1, 0
            limit_train_batches = limit_val_batches = limit_test_batches = 1
        self.max_epochs, self.max_steps = max_epochs, max_steps
        self.accelerator, self.devices, self.strategy, self.precision = accelerator, devices, strategy, precision
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val, self.gradient_clip_algorithm = gradient_clip_val, gradient_clip_algorithm
        self.check_val_every_n_epoch, self.num_sanity_val_steps = check_val_every_n_epoch, num_sanity_val_steps
        self.log_every_n_steps = log_every_n_steps
        self.limit_train_batches, self.limit_val_batches = limit_train_batches, limit_val_batches
        self.limit_test_batches, self.fast_dev_run = limit_test_batches, fast_dev_run
        self.deterministic, self.num_threads = deterministic, num_threads
        self.compile, self.channels_last = compile, channels_last
        self.matmul_precision, self.cudnn_benchmark = matmul_precision, cudnn_benchmark
        self.callbacks: list[Callback] = list(callbacks or [])
        self.logger = logger
        self.default_root_dir = Path(default_root_dir)

        # Loop state: what a checkpoint records and a resume restores.
        self.epoch = 0
        self.global_step = 0
        self.epoch_finished = False  # the current epoch's end-of-epoch work is done
        self.should_stop = False  # set by callbacks (early stopping)
        self.optimizer_stepped = False  # the last batch ended with an optimizer step
        self.callback_metrics: dict[str, float] = {}
        self.last_checkpoint_path: str | None = None
        self.stage = "idle"
        self.fitting = False  # inside fit (callbacks use it to ignore standalone validate/test)
        self.device = torch.device("cpu")
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any | None = None
        self.scheduler_interval = "epoch"
        self.scaler: torch.amp.GradScaler | None = None
        self.train_loader: Any | None = None
        self.config: dict[str, Any] | None = None
        self._task: Any | None = None
        self._raw_model: nn.Module | None = None
        self._train_metrics = MeanAccumulator()  # exact means of the current epoch
        self._window = MeanAccumulator()  # since the last step log
        self._nonfinite_step: int | None = None  # first step with a non-finite loss, once found
        self._unchecked: list[tuple[int, torch.Tensor]] | None = None  # (step, loss) since the last check
        self._preemption = PreemptionHandler()

    # ------------------------------------------------------------------ set-up
    def _select_device(self) -> torch.device:
        accelerator = self.accelerator
        if accelerator == "auto":
            if torch.cuda.is_available():
                accelerator = "cuda"
            elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                accelerator = "mps"
            else:
                accelerator = "cpu"
        if accelerator == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("accelerator='cuda': no CUDA device is available")
            return torch.device("cuda", dist.local_rank() if self.strategy == "ddp" else 0)
        if accelerator == "mps" and not torch.backends.mps.is_available():
            raise ValueError("accelerator='mps': MPS is not available")
        return torch.device(accelerator)

    def _setup(self, task: Any) -> None:
        """Device, threads, process group, precision and model wrapping."""
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        set_deterministic(self.deterministic)
        if self.matmul_precision is not None:
            torch.set_float32_matmul_precision(self.matmul_precision)
        torch.backends.cudnn.benchmark = self.cudnn_benchmark and not self.deterministic
        self.device = self._select_device()
        if self.strategy == "ddp":
            dist.init_from_env(self.device)
        if self.precision == "16-mixed":
            self.scaler = torch.amp.GradScaler(self.device.type)
        task.to(self.device)
        if self.channels_last:
            task.to(memory_format=torch.channels_last)
        self._task = task

    def _wrap_model(self, task: Any) -> None:
        """DDP and torch.compile wrap ``task.model`` for the duration of ``fit``."""
        self._raw_model = task.model
        model = task.model
        if dist.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.compile:
            model = torch.compile(model)
        task.model = model

    def _unwrap_model(self, task: Any) -> None:
        if self._raw_model is not None:
            task.model = self._raw_model
            self._raw_model = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            batch = batch.to(self.device, non_blocking=True)
            if self.channels_last and batch.dim() == 4:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        return batch

    def _loader(self, datamodule: Any, split: str) -> Any:
        return getattr(datamodule, f"{split}_loader")(device=self.device, rank=dist.rank(),
                                                      world_size=dist.world_size())

    # ------------------------------------------------------------------- hooks
    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, self._task, *args)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record metrics for callbacks and send them to the logger (rank 0 only)."""
        self.callback_metrics.update(metrics)
        if self.logger is not None and dist.is_rank_zero():
            self.logger.log_metrics(metrics, self.global_step if step is None else step)

    @property
    def is_global_zero(self) -> bool:
        return dist.is_rank_zero()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else float("nan")

    # --------------------------------------------------------------------- fit
    def fit(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None,
            config: dict[str, Any] | None = None) -> None:
        """Train ``task`` on ``datamodule``; ``ckpt_path`` resumes exactly where that checkpoint stopped."""
        self.config = config
        self._setup(task)
        datamodule.setup("fit")
        self.optimizer, self.scheduler, self.scheduler_interval = task.configure_optimizers()
        self.train_loader = self._loader(datamodule, "train")
        val_loader = self._loader(datamodule, "val")
        if ckpt_path is not None:
            self._restore(ckpt_path, task)
        self._nonfinite_step, self._unchecked = None, []
        if self.logger is not None and dist.is_rank_zero():
            self.logger.start(self.global_step, resumed=ckpt_path is not None)
        self._wrap_model(task)
        self._preemption.install()
        self.fitting = True
        try:
            self._call("on_fit_start")
            if ckpt_path is None and self.num_sanity_val_steps > 0:
                self.stage = "sanity"
                self._evaluate(task, val_loader, "val", limit=self.num_sanity_val_steps, call_hooks=False)
            while self.epoch < self.max_epochs and not self.should_stop and not self._max_steps_reached():
                if self.epoch_finished:  # restored at an epoch boundary
                    self.epoch, self.epoch_finished = self.epoch + 1, False
                    continue
                self._run_epoch(task, val_loader)
            self._call("on_fit_end")
        except BaseException as e:
            self._call("on_exception", e)
            raise
        finally:
            self.stage, self.fitting = "idle", False
            self._preemption.uninstall()
            self._unwrap_model(task)
            ckpt.wait_for_saves()
            if self.logger is not None and dist.is_rank_zero():
                self.logger.flush()

    def _max_steps_reached(self) -> bool:
        return self.max_steps != -1 and self.global_step >= self.max_steps

    def _run_epoch(self, task: Any, val_loader: Any) -> None:
        self.stage = "train"
        self.train_loader.set_epoch(self.epoch)
        self._call("on_train_epoch_start")
        completed = self._train_epoch(task)
        if completed:
            train = {f"train/{k}": v for k, v in self._train_metrics.compute().items()}
            self._train_metrics.reset()
            self._check_finite()
            self.log_metrics({**train, "epoch": float(self.epoch)})
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                self.scheduler.step()
        # else: max_steps stopped the epoch part-way. Its metric sums and the epoch's
        # scheduler step stay pending, so a resume with a larger max_steps finishes the
        # epoch exactly as an uninterrupted run would.
        last_epoch = self.epoch + 1 == self.max_epochs or not completed
        if (self.epoch + 1) % self.check_val_every_n_epoch == 0 or last_epoch:
            self.stage = "val"
            self._evaluate(task, val_loader, "val", limit=_limit(self.limit_val_batches, len(val_loader)))
        self.epoch_finished = completed
        self._call("on_train_epoch_end")
        if self._preempt_requested(at_epoch_end=True):
            self._preempt()

    def _train_epoch(self, task: Any) -> bool:
        """Train on the rest of the current epoch; False if ``max_steps`` stopped it early."""
        task.train()
        loader = self.train_loader
        sizes = loader.sizes()
        n_batches = _limit(self.limit_train_batches, len(sizes))
        accumulate = self.accumulate_grad_batches
        # Per-epoch decisions, so the per-batch path does no repeated Python work:
        # in-memory batches already sit on the device, DDP is known, and callbacks
        # that do not override on_train_batch_end are not called.
        move = getattr(loader, "device", None) != self.device or self.channels_last
        is_ddp = isinstance(task.model, nn.parallel.DistributedDataParallel)
        batch_hooks = self._overriding("on_train_batch_end")
        # zip stops on the range first, so the loader is never advanced past the limit.
        for batch_idx, batch in zip(range(loader.position, n_batches), loader):
            if move:
                batch = self._to_device(batch)
            cycle_start = batch_idx - batch_idx % accumulate
            cycle_end = min(cycle_start + accumulate, n_batches)
            step_now = batch_idx + 1 == cycle_end
            # Weight each micro-batch by its share of the samples in its accumulation
            # cycle, so k accumulated batches equal one k-times larger batch exactly.
            # (Without accumulation the weight is exactly 1: no multiply, no extra autograd node.)
            weight = 1.0 if accumulate == 1 else sizes[batch_idx] / sum(sizes[cycle_start:cycle_end])
            sync_context = task.model.no_sync() if not step_now and is_ddp else contextlib.nullcontext()
            with sync_context:
                with self._autocast():
                    result = task.training_step(batch)
                loss = result.loss if weight == 1.0 else result.loss * weight
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            self._track(result)
            self.optimizer_stepped = step_now
            if step_now:
                self._optimizer_step()
            for hook in batch_hooks:
                hook(self, task, result, batch, batch_idx)
            if step_now and (self._max_steps_reached() or self._preempt_requested(at_epoch_end=False)):
                if self._preemption.received:
                    self._preempt()
                break
        self.optimizer_stepped = False
        return loader.position >= n_batches

    def _overriding(self, hook: str) -> list[Any]:
        """Bound ``hook`` methods of the callbacks that implement it (not the base no-op)."""
        base = getattr(Callback, hook)
        return [getattr(c, hook) for c in self.callbacks
                if getattr(type(c), hook, None) is not base or hook in vars(c)]

    def _track(self, result: Any) -> None:
        """Keep the step's metrics for both accumulators and its loss for the next finiteness check.

        One device op per step: the metrics are stacked into one row that both accumulators
        keep and sum in bulk when read (see ``MeanAccumulator``). The losses since the last
        check are only kept; ``_check_finite`` tests them all at once when it syncs anyway.
        """
        if result.metrics:
            names, row = MeanAccumulator.row(result.metrics)
            self._train_metrics.add_row(names, row, result.batch_size)
            self._window.add_row(names, row, result.batch_size)
        else:  # nothing to keep: only the sample count moves
            self._train_metrics.update(result.metrics, result.batch_size)
            self._window.update(result.metrics, result.batch_size)
        self._unchecked.append((self.global_step, result.loss.detach()))
        if len(self._unchecked) >= 4096:  # no log for a long while: check now to bound memory
            self._check_finite()

    def _optimizer_step(self) -> None:
        if self.gradient_clip_val is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if self.gradient_clip_algorithm == "norm":
                torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(params, self.gradient_clip_val)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and self.scheduler_interval == "step":
            self.scheduler.step()
        self.global_step += 1
        if self.global_step % self.log_every_n_steps == 0:
            window = {f"train/{k}_step": v for k, v in self._window.compute(sync=False).items()}
            self._window.reset()
            self._check_finite()
            self.log_metrics(window)

    def _check_finite(self) -> None:
        """Raise if any step since the start produced a non-finite loss (one host sync)."""
        if self._unchecked is None:
            return
        if self._nonfinite_step is None and self._unchecked:
            pending, self._unchecked = self._unchecked, []
            finite = torch.isfinite(torch.stack([loss.reshape(()) for _, loss in pending]))
            if not bool(finite.all()):
                self._nonfinite_step = pending[int((~finite).nonzero()[0])][0]
        local = -1 if self._nonfinite_step is None else self._nonfinite_step
        bad = int(dist.all_reduce_max(float(local)))
        if bad >= 0:
            where = self.last_checkpoint_path or "none saved yet"
            raise NonFiniteLossError(f"non-finite loss at step {bad + 1} (epoch {self.epoch}); training stopped. "
                                     f"Last good checkpoint: {where}")

    # -------------------------------------------------------------- preemption
    def _preempt_requested(self, at_epoch_end: bool) -> bool:
        """Did any rank receive a stop signal? Checked every step in one process; under DDP
        every ``log_every_n_steps`` steps and at epoch ends, so no collective runs per step."""
        if not dist.is_distributed():
            return self._preemption.received is not None
        if not at_epoch_end and self.global_step % self.log_every_n_steps:
            return False
        flag = dist.all_reduce_max(1.0 if self._preemption.received else 0.0)
        if flag and self._preemption.received is None:
            self._preemption.received = "SIGTERM"
        return bool(flag)

    def _preempt(self) -> None:
        path = self.checkpoint_dir / "last.ckpt"
        self.save_checkpoint(path)
        ckpt.wait_for_saves()  # on disk before anyone may end this process
        log.warning("%s received: saved %s at epoch %d, step %d; resume with ckpt_path=%s",
                    self._preemption.received, path, self.epoch, self.global_step, path)
        self._preemption.forward()
        raise Preempted(self._preemption.received or "signal", str(path))

    @property
    def checkpoint_dir(self) -> Path:
        for callback in self.callbacks:
            if getattr(callback, "dirpath", None) is not None:
                return Path(callback.dirpath)
        return self.default_root_dir / "checkpoints"

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _evaluate(self, task: Any, loader: Any, stage: str, limit: int, call_hooks: bool = True) -> dict[str, float]:
        task.eval()
        if call_hooks and stage == "val":
            self._call("on_validation_start")
        loader.restart()
        metrics = MeanAccumulator()
        step = task.validation_step if stage == "val" else task.test_step
        for batch_idx, batch in zip(range(limit), loader):
            batch = self._to_device(batch)
            with self._autocast():
                result = step(batch)
            metrics.update(result.metrics, result.batch_size)
            if call_hooks and stage == "val":
                self._call("on_validation_batch_end", result, batch, batch_idx)
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        if call_hooks:
            self.log_metrics(values)
            self._call("on_validation_end" if stage == "val" else "on_test_end")
        task.train(self.stage == "train")
        return values

    def validate(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None) -> dict[str, float]:
        return self._evaluate_standalone(task, datamodule, "val", ckpt_path)

    def test(self, task: Any, datamodule: Any, ckpt_path: str | os.PathLike | None = None) -> dict[str, float]:
        """Evaluate on the test split; ``ckpt_path='best'`` loads the best checkpoint first."""
        return self._evaluate_standalone(task, datamodule, "test", ckpt_path)

    def _evaluate_standalone(self, task: Any, datamodule: Any, stage: str,
                             ckpt_path: str | os.PathLike | None) -> dict[str, float]:
        if self._task is not task:
            self._setup(task)
        datamodule.setup(stage if stage == "test" else "fit")
        if ckpt_path == "best":
            ckpt_path = next((c.best_model_path for c in self.callbacks if getattr(c, "best_model_path", None)), None)
            if ckpt_path is None:
                log.warning("test(ckpt_path='best'): no best checkpoint was saved; using the current weights")
        if ckpt_path is not None:
            state = ckpt.load(ckpt_path, map_location=self.device)
            self._load_model_weights(task, state, str(ckpt_path))
            log.info("%s with weights from %s", stage, ckpt_path)
        loader = self._loader(datamodule, stage)
        self.stage = stage
        limit = _limit(self.limit_val_batches if stage == "val" else self.limit_test_batches, len(loader))
        try:
            return self._evaluate(task, loader, stage, limit=limit)
        finally:
            self.stage = "idle"
            if self.logger is not None and dist.is_rank_zero():
                self.logger.flush()

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run bit for bit, as tensors and plain containers."""
        model = ckpt.unwrap_model(self._task.model)
        return {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "loop": {"epoch": self.epoch, "global_step": self.global_step, "epoch_finished": self.epoch_finished,
                     "should_stop": self.should_stop},
            "train_metrics": self._train_metrics.state_dict(),
            "window": self._window.state_dict(),
            "data": {"train": self.train_loader.state_dict()} if self.train_loader is not None else {},
            "rng": ckpt.capture_rng(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks},
            "callback_metrics": dict(self.callback_metrics),
            "config": self.config,
            "world_size": dist.world_size(),
            "versions": {"torch": str(torch.__version__), "expkit": expkit.__version__,
                         "python": platform.python_version()},
        }

    def save_checkpoint(self, path: str | os.PathLike, *copies: str | os.PathLike) -> str:
        """Write a checkpoint atomically (rank 0 only), after checking the loss was finite.
        ``copies``: more paths for the same state (serialized once: best.ckpt and last.ckpt)."""
        self._check_finite()
        self._check_finite_weights(path)
        state = self.state_dict()  # every rank builds it: RNG and loader calls stay in step
        if dist.is_rank_zero():
            # In one process the disk writes overlap training (fit waits for them at its end).
            # Under DDP they are synchronous: other ranks read best.ckpt right after the barrier.
            background = self.fitting and not dist.is_distributed()
            ckpt.save_atomic(state, path, background=background, copies=copies)
        dist.barrier()  # no rank reads the file (test with best.ckpt) before rank 0 has written it
        self.last_checkpoint_path = str(copies[-1] if copies else path)
        return str(path)

    def _check_finite_weights(self, path: str | os.PathLike) -> None:
        """A finite loss can still leave inf/NaN weights after the update: never save those."""
        tensors = [t for t in ckpt.unwrap_model(self._task.model).state_dict().values() if t.is_floating_point()]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            where = self.last_checkpoint_path or "none saved yet"
            raise NonFiniteLossError(f"non-finite weights after step {self.global_step} (epoch {self.epoch}); "
                                     f"{path} was not written. Last good checkpoint: {where}")

    def _load_model_weights(self, task: Any, state: dict[str, Any], path: str) -> None:
        model = ckpt.unwrap_model(task.model)
        ckpt.compare_shapes(model.state_dict(), state["model"], path)
        model.load_state_dict(state["model"])

    def _restore(self, path: str | os.PathLike, task: Any) -> None:
        state = ckpt.load(path, map_location=self.device)
        for key in ("optimizer", "loop", "rng", "data"):
            if key not in state:
                raise ckpt.CheckpointError(f"checkpoint {path}: has no '{key}' entry, so training cannot resume "
                                           "from it (weights-only file?)")
        self._load_model_weights(task, state, str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("grad_scaler") is not None:
            self.scaler.load_state_dict(state["grad_scaler"])
        loop = state["loop"]
        self.epoch, self.global_step = int(loop["epoch"]), int(loop["global_step"])
        self.epoch_finished, self.should_stop = bool(loop["epoch_finished"]), bool(loop.get("should_stop", False))
        self._train_metrics.load_state_dict(state["train_metrics"], self.device)
        self._window.load_state_dict(state["window"], self.device)
        if state["data"].get("train") is not None:
            self.train_loader.load_state_dict(state["data"]["train"])
        self.callback_metrics = dict(state.get("callback_metrics", {}))
        saved = state.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in saved:
                callback.load_state_dict(saved[callback.state_key])
        ckpt.restore_rng(state["rng"])
        self.last_checkpoint_path = str(path)
        log.info("resumed from %s at epoch %d, step %d%s", path, self.epoch, self.global_step,
                 "" if self.epoch_finished else f" (batch {self.train_loader.position} of the epoch)")
