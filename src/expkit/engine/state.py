"""What a checkpoint holds to continue a run bit for bit, and how it is put back.

Everything is tensors and plain containers, so ``torch.load(..., weights_only=True)``
always reads it. No absolute path is stored: callbacks keep file names and re-derive
them from their own folder, so a run directory that was copied or moved resumes with
its own files.
"""
from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

import expkit
from expkit.engine import checkpoint as ckpt
from expkit.engine import distributed as dist
from expkit.engine import fsdp
from expkit.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from expkit.engine.trainer import Trainer

log = logging.getLogger(__name__)

#: What a checkpoint must hold for training (not only evaluation) to resume from it.
RESUME_KEYS = ("optimizer", "loop", "rng", "data")


def capture(trainer: "Trainer") -> dict[str, Any]:
    """The whole training state (every rank builds it: RNG and loader calls stay in step, and a
    sharded model and optimizer are gathered, a collective; off rank 0 they are then empty)."""
    return {
        "format": ckpt.FORMAT,
        "format_version": ckpt.FORMAT_VERSION,
        "model": fsdp.model_state(trainer.task.model),
        "optimizer": fsdp.optimizer_state(trainer.task.model, trainer.optimizer) if trainer.optimizer is not None else None,
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "grad_scaler": trainer.runtime.scaler.state_dict() if trainer.runtime.scaler is not None else None,
        "loop": {"epoch": trainer.epoch, "global_step": trainer.global_step,
                 "epoch_finished": trainer.epoch_finished, "should_stop": trainer.should_stop,
                 "validated_step": trainer.validated_step},
        **trainer.meters.state_dict(),
        "data": {"train": trainer.train_loader.state_dict()} if trainer.train_loader is not None else {},
        "rng": ckpt.capture_rng(),
        "callbacks": {c.state_key: c.state_dict() for c in trainer.callbacks},
        "callback_metrics": dict(trainer.callback_metrics),
        "config": trainer.config,
        "world_size": dist.world_size(),
        "versions": {"torch": str(torch.__version__), "expkit": expkit.__version__,
                     "python": platform.python_version()},
    }


def _put_weights(model: torch.nn.Module, weights: dict[str, Any], path: str | Path) -> None:
    """Put ``weights`` into the plain (or sharded) ``model``, refusing ones that do not fit."""
    ckpt.compare_shapes(ckpt.unwrap_model(model).state_dict(), weights, str(path))  # DTensor shapes are global
    fsdp.load_model_state(model, weights)


def evaluation_weights(state: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """What evaluating a checkpoint uses: the averaged weights a callback kept (``eval_model`` in
    its state: the EMA callback) when there are some, else the trained ``model``."""
    for name, saved in (state.get("callbacks") or {}).items():
        if isinstance(saved, dict) and isinstance(saved.get("eval_model"), dict) and saved["eval_model"]:
            return saved["eval_model"], f"{name}'s averaged weights"
    return state["model"], "weights"


def save(trainer: "Trainer", path: str | os.PathLike, *copies: str | os.PathLike,
         on_saved: Callable[[Path], None] | None = None) -> str:
    """Write the state (rank 0 only) unless the weights are not finite; ``copies`` are more paths
    for the same bytes (serialized once: best.ckpt and last.ckpt)."""
    trainer.guard.check_weights(fsdp.weights_to_check(trainer.task.model),
                                f"after step {trainer.global_step} (epoch {trainer.epoch}); {path} was not written",
                                trainer.last_checkpoint_path)
    snapshot = capture(trainer)  # every rank builds it: RNG and loader calls stay in step
    if dist.is_rank_zero():
        # In one process the disk writes overlap training (fit waits for them at its end).
        # Under DDP they are synchronous: other ranks read best.ckpt right after the barrier.
        background = trainer.fitting and not dist.is_distributed()
        ckpt.save_atomic(snapshot, path, background=background, copies=copies, on_saved=on_saved)
    dist.barrier()  # no rank reads the file (test with best.ckpt) before rank 0 has written it
    trainer.last_checkpoint_path = str(copies[-1] if copies else path)
    return str(path)


def load_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Put a checkpoint's evaluation weights (see ``evaluation_weights``) into the plain ``model``."""
    weights, what = evaluation_weights(state)
    _put_weights(model, weights, path)
    if what != "weights":
        log.info("evaluating %s from %s", what, path)


def restore(trainer: "Trainer", state: dict[str, Any], path: str | Path) -> None:
    """Put everything ``capture`` saved back, so the next step is the one the saved run took."""
    for key in RESUME_KEYS:
        if key not in state:
            raise CheckpointError(f"checkpoint {path}: has no '{key}' entry, so training cannot resume "
                                  "from it (weights-only file?)")
    _put_weights(trainer.task.model, state["model"], path)
    fsdp.load_optimizer_state(trainer.task.model, trainer.optimizer, state["optimizer"])
    if trainer.scheduler is not None and state.get("scheduler") is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    if trainer.runtime.scaler is not None and state.get("grad_scaler") is not None:
        trainer.runtime.scaler.load_state_dict(state["grad_scaler"])
    loop = state["loop"]
    trainer.epoch, trainer.global_step = int(loop["epoch"]), int(loop["global_step"])
    trainer.epoch_finished, trainer.should_stop = bool(loop["epoch_finished"]), bool(loop.get("should_stop"))
    trainer.validated_step = int(loop.get("validated_step", -1))
    trainer.meters.load_state_dict(state, trainer.runtime.device)
    if state["data"].get("train") is not None:
        trainer.train_loader.load_state_dict(state["data"]["train"])
        if not trainer.epoch_finished and not trainer.train_loader.resumes_mid_epoch:
            trainer.meters.restart_epoch()  # the loader starts the epoch again: so do its sums
    trainer.callback_metrics = dict(state.get("callback_metrics", {}))
    saved = state.get("callbacks", {})
    for callback in trainer.callbacks:
        if callback.state_key in saved:
            callback.load_state_dict(saved[callback.state_key])
    ckpt.restore_rng(state["rng"])
    trainer.last_checkpoint_path = str(path)  # the last good checkpoint, until this run saves one
    log.info("resumed from %s at epoch %d, step %d%s", path, trainer.epoch, trainer.global_step,
             "" if trainer.epoch_finished else f" (batch {trainer.train_loader.position} of the epoch)")
