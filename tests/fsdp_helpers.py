"""Importable helpers for tests/test_fsdp.py: FSDP workers are spawned, so what they run must
live in a module (the test adds this folder to the workers' PYTHONPATH).

Adam (its state is what a checkpoint must shard and gather), gradient clipping by the global
norm, the grad norm logged at every step, a training set of 96 samples in global batches of
32 (3 steps per epoch) and a validation set of 51 that divides by neither the world size nor
the batch: one process with batch 32 and two FSDP ranks with 16 each must take the same steps.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from ddp_helpers import EpochMetrics
from expkit.tasks import ClassificationTask

GLOBAL_BATCH, MID_STEP, CLIP = 32, 4, 0.5  # step 4 is inside epoch 1


def _task() -> ClassificationTask:
    from functools import partial

    from expkit.engine import seed_everything
    from expkit.models import MLP

    seed_everything(0)
    model = MLP(input_shape=(1, 4, 4), num_outputs=3, hidden_sizes=(8,))
    return ClassificationTask(model, optimizer=partial(torch.optim.Adam, lr=0.05))


def fit(max_epochs: int = 2, resume: str | None = None, stop_at_step: int | None = None,
        checkpoint_dir: str | None = None, **options: Any) -> dict:
    """Train the tiny model (FSDP when started as one of several processes): the final full
    weights (on rank 0), the per-epoch metrics and the last grad norm logged.

    With ``stop_at_step``, training stops there and ``checkpoint_dir/last.ckpt`` is the
    mid-epoch checkpoint ModelCheckpoint wrote at that step."""
    from expkit.callbacks import ModelCheckpoint
    from expkit.data import SyntheticDataModule
    from expkit.engine import Trainer, fsdp

    sharded = int(os.environ.get("WORLD_SIZE", "1")) > 1
    task = _task()
    datamodule = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=3, num_train=96, num_val=51, num_test=8,
                                     batch_size=GLOBAL_BATCH, eval_batch_size=10, seed=3)
    recorder = EpochMetrics()
    callbacks: list = [recorder]
    if stop_at_step is not None:
        callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, monitor=None, save_last=False,
                                         every_n_train_steps=stop_at_step))
    trainer = Trainer(max_epochs=max_epochs, max_steps=stop_at_step or -1, accelerator="cpu",
                      strategy="fsdp" if sharded else "auto", num_sanity_val_steps=0, num_threads=1,
                      gradient_clip_val=CLIP, log_every_n_steps=1, callbacks=callbacks, logger=None, **options)
    trainer.fit(task, datamodule, ckpt_path=resume)
    weights = {k: v.detach().clone() for k, v in fsdp.model_state(task.model).items()}  # all ranks gather
    return {"weights": weights, "epochs": recorder.epochs, "sharded": fsdp.is_sharded(task.model),
            "grad_norm": trainer.callback_metrics.get("train/grad_norm")}


def fsdp_worker(single_mid_ckpt: str, fsdp_ckpt_dir: str) -> dict:
    """Everything tests/test_fsdp.py runs on two ranks, in one launch to save start-up time."""
    import torch.distributed as tdist

    result = {
        "plain": fit(),
        "accumulated": fit(accumulate_grad_batches=3),
        "stopped": fit(stop_at_step=MID_STEP, checkpoint_dir=fsdp_ckpt_dir),
        "resumed": fit(resume=os.path.join(fsdp_ckpt_dir, "last.ckpt")),
        "resumed_from_single": fit(resume=single_mid_ckpt),
        "bf16": fit(max_epochs=1, precision="bf16-mixed"),
    }
    tdist.destroy_process_group()
    return result
