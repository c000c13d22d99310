"""Where and how the math runs: device, threads, precision, DDP/FSDP and torch.compile. The trainer
asks it for autocast, a GradScaler-aware backward and a clipped optimizer step, so it never
branches on precision or strategy itself."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

import torch
from torch import nn

from expkit.engine import distributed as dist
from expkit.engine import fsdp
from expkit.engine.loaders import move_to
from expkit.engine.options import DISTRIBUTED
from expkit.engine.seed import set_deterministic
from expkit.engine.threads import default_threads
from expkit.errors import ConfigError

log = logging.getLogger(__name__)


_NOTHING = contextlib.nullcontext()  # reusable: the per-step path creates no context objects


def select_device(accelerator: str, strategy: str) -> torch.device:
    if accelerator == "auto":
        mps = getattr(torch.backends, "mps", None)
        accelerator = ("cuda" if torch.cuda.is_available() else
                       "mps" if mps is not None and mps.is_available() else "cpu")
    if accelerator == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator='cuda': no CUDA device is available")
        return torch.device("cuda", dist.local_rank() if strategy in DISTRIBUTED else 0)
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator='mps': MPS is not available")
    return torch.device(accelerator)


class Runtime:
    """The device-side state of one trainer: set up once per task, used by every step."""

    def __init__(self, opts: Any) -> None:
        self.opts = opts
        self.device = torch.device("cpu")
        self.scaler: torch.amp.GradScaler | None = None
        self.grad_norm: torch.Tensor | None = None  # measured at step logs (optimizer_step)
        self.is_ddp = False

    def setup(self, task: nn.Module) -> None:
        """Threads, determinism, device, process group and precision; moves ``task`` there."""
        opts = self.opts
        threads, why = (opts.num_threads, "trainer.num_threads") if opts.num_threads else default_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        if dist.is_rank_zero():
            log.info("intra-op threads per process: %d (%s)", torch.get_num_threads(), why)
        set_deterministic(opts.deterministic)
        if opts.matmul_precision is not None:
            torch.set_float32_matmul_precision(opts.matmul_precision)
        torch.backends.cudnn.benchmark = opts.cudnn_benchmark and not opts.deterministic
        self.device = select_device(opts.accelerator, opts.strategy)
        if opts.strategy in DISTRIBUTED:
            dist.init_from_env(self.device, opts.strategy)
        if str(opts.precision) == "16-mixed":
            self.scaler = torch.amp.GradScaler(self.device.type)
        task.to(self.device)
        if opts.channels_last:
            task.to(memory_format=torch.channels_last)
        if opts.strategy == "fsdp":  # in place, before the task builds its optimizer over the shards
            fsdp.shard(task.model, str(opts.precision), self.device)

    @contextlib.contextmanager
    def wrapped(self, task: Any) -> Iterator[None]:
        """DDP and torch.compile wrap ``task.model`` while training; the plain module comes back after
        (FSDP sharded it in ``setup`` already: it stays sharded)."""
        plain = task.model
        model = plain
        ddp = dist.is_distributed() and self.opts.strategy != "fsdp"
        if ddp:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.opts.compile:
            model = torch.compile(model)
        task.model, self.is_ddp = model, ddp
        try:
            yield
        finally:
            task.model, self.is_ddp = plain, False

    def autocast(self) -> contextlib.AbstractContextManager:
        precision = str(self.opts.precision)
        if precision == "32":
            return _NOTHING
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def gathered(self, task: Any) -> contextlib.AbstractContextManager:
        """Evaluation: FSDP gathers the full parameters once (see ``fsdp.gathered``)."""
        return fsdp.gathered(task.model)

    def no_sync(self, task: Any, syncing: bool) -> contextlib.AbstractContextManager:
        """DDP skips the gradient all-reduce (FSDP the reduce-scatter) on micro-batches that do not end
        an accumulation cycle."""
        if syncing:
            return _NOTHING
        return task.model.no_sync() if self.is_ddp else fsdp.no_sync(task.model) if fsdp.is_sharded(task.model) \
            else _NOTHING

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer, measure: bool = False) -> None:
        """Clip (after unscaling), step (through the scaler) and clear the gradients. ``measure``:
        keep the gradients' total norm before clipping (``grad_norm_metrics``) if it is logged."""
        clip = self.opts.gradient_clip_val
        logged = self.opts.log_grad_norm if self.opts.log_grad_norm is not None else clip is not None
        self.grad_norm = None
        if clip is not None or (measure and logged):
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if clip is not None and self.opts.gradient_clip_algorithm == "norm":
                norm = nn.utils.clip_grad_norm_(params, clip)  # returns the norm before clipping
            else:
                grads = [p.grad for p in params if p.grad is not None]
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) \
                    if measure and logged and grads else None
                if clip is not None:
                    nn.utils.clip_grad_value_(params, clip)
            self.grad_norm = norm if measure and logged else None
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def grad_norm_metrics(self) -> dict[str, float]:
        """``train/grad_norm`` of the step just taken, when it was measured (one device sync)."""
        return {} if self.grad_norm is None else {"train/grad_norm": float(self.grad_norm)}

    def to_device(self, batch: Any) -> Any:
        return move_to(batch, self.device, non_blocking=True, channels_last=self.opts.channels_last)
