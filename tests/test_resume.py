"""Resuming is exact: an interrupted and resumed run ends with the same weights and the
same TensorBoard scalars as a run that was never interrupted, at epoch ends and mid-epoch,
in plain Python and through ``train.py``, after a crash, a signal or a finished shorter run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import ROOT, read_json, read_scalars, train
from expkit.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from expkit.data import SyntheticDataModule
from expkit.engine import EXIT_PREEMPTED, NonFiniteLossError, Trainer, seed_everything
from expkit.engine.callback import Callback
from expkit.engine.checkpoint import load
from expkit.loggers import TensorBoardLogger
from expkit.models import MLP
from expkit.tasks import ClassificationTask

# 200 samples in batches of 16 = 13 batches (the last of 8); 3 accumulated per step = 5 steps an epoch.
STEPS_PER_EPOCH = 5


class CrashAt(Callback):
    """Stand-in for a crash (OOM, node failure): raise right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if trainer.optimizer_stepped and trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def fit(run_dir: Path, max_epochs: int, *, ckpt_path: Path | None = None, loader: str = "memory",
        every_n_train_steps: int | None = None, extra: tuple[Callback, ...] = (),
        scheduler_interval: str = "epoch", task_class: type = ClassificationTask) -> Trainer:
    """A small run with everything that can break exactness on: shuffling, dropout, momentum,
    a cosine schedule, gradient accumulation with a short last cycle, callbacks with state."""
    seed_everything(0)
    data = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=4, num_train=200, num_val=48, num_test=48,
                               batch_size=16, loader=loader, seed=3)
    model = MLP((1, 4, 4), 4, hidden_sizes=(16,), dropout=0.3)
    task = task_class(model, optimizer=partial(torch.optim.SGD, lr=0.2, momentum=0.9),
                      scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=12),
                      scheduler_interval=scheduler_interval)
    callbacks = [*extra, ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=every_n_train_steps),
                 EarlyStopping(patience=20), LearningRateMonitor()]
    logger = TensorBoardLogger(str(run_dir / "tensorboard"))
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", accumulate_grad_batches=3, num_sanity_val_steps=1,
                      log_every_n_steps=1, callbacks=callbacks, logger=logger, default_root_dir=run_dir)
    try:
        trainer.fit(task, data, ckpt_path=ckpt_path)
    finally:
        logger.finalize()
    return trainer


def model_state(path: Path) -> dict[str, torch.Tensor]:
    return load(path)["model"]


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def assert_clean_steps(scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Every tag's steps strictly increase: nothing logged twice, nothing out of order."""
    for tag, events in scalars.items():
        steps = [step for step, _ in events]
        assert steps == sorted(set(steps)), f"{tag}: steps {steps}"


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted 4-epoch runs, one per loader, shared by the engine tests."""
    runs = {}
    for loader in ("memory", "dataloader"):
        run_dir = tmp_path_factory.mktemp(f"straight-{loader}")
        fit(run_dir, 4, loader=loader, every_n_train_steps=3)
        runs[loader] = run_dir
    return runs


def test_two_epochs_then_resume_to_four_is_exact(straight: dict[str, Path], tmp_path: Path) -> None:
    fit(tmp_path, 2, every_n_train_steps=3)
    trainer = fit(tmp_path, 4, every_n_train_steps=3, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert trainer.global_step == 4 * STEPS_PER_EPOCH
    assert_same_tensors(model_state(straight["memory"] / "checkpoints/last.ckpt"),
                        model_state(tmp_path / "checkpoints/last.ckpt"))
    expected, resumed = read_scalars(straight["memory"] / "tensorboard"), read_scalars(tmp_path / "tensorboard")
    assert "lr" in expected and "train/loss_step" in expected
    assert resumed == expected
    full, again = load(straight["memory"] / "checkpoints/last.ckpt"), load(tmp_path / "checkpoints/last.ckpt")
    for states in (full["callbacks"], again["callbacks"]):  # the run directories differ
        states["ModelCheckpoint"].pop("best_model_path")
    assert full["callbacks"] == again["callbacks"]  # best score and epoch, early-stopping counter, lr
    assert_same_tensors(full["optimizer"]["state"][0], again["optimizer"]["state"][0])


@pytest.mark.parametrize("loader", ["memory", "dataloader"])
def test_crash_after_a_mid_epoch_checkpoint_resumes_exactly(straight: dict[str, Path], tmp_path: Path,
                                                            loader: str) -> None:
    # Checkpoints every 3 steps (5 per epoch): the one at step 12 is two steps into epoch 2.
    # The crash at step 14 leaves events for steps 13-14 that the resumed run must hide.
    with pytest.raises(RuntimeError, match="crash at step 14"):
        fit(tmp_path, 4, loader=loader, every_n_train_steps=3, extra=(CrashAt(14),))
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = load(last)
    assert (state["loop"]["global_step"], state["loop"]["epoch"], state["loop"]["epoch_finished"]) == (12, 2, False)
    assert state["data"]["train"]["position"] == 6  # batches of epoch 2 already trained on
    fit(tmp_path, 4, loader=loader, every_n_train_steps=3, ckpt_path=last)
    assert_same_tensors(model_state(straight[loader] / "checkpoints/last.ckpt"), model_state(last))
    resumed = read_scalars(tmp_path / "tensorboard")
    assert_clean_steps(resumed)
    assert resumed == read_scalars(straight[loader] / "tensorboard")


def test_crash_after_an_epoch_end_checkpoint_logs_nothing_twice(straight: dict[str, Path], tmp_path: Path) -> None:
    # No step checkpoints: last.ckpt is from the end of epoch 1 (step 10); the crash is in epoch 2.
    with pytest.raises(RuntimeError):
        fit(tmp_path, 4, extra=(CrashAt(13),))
    fit(tmp_path, 4, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert_same_tensors(model_state(straight["memory"] / "checkpoints/last.ckpt"),
                        model_state(tmp_path / "checkpoints/last.ckpt"))
    resumed = read_scalars(tmp_path / "tensorboard")
    assert_clean_steps(resumed)
    assert resumed == read_scalars(straight["memory"] / "tensorboard")


def test_per_step_schedule_resumes_exactly_mid_epoch(tmp_path: Path) -> None:
    fit(tmp_path / "a", 3, every_n_train_steps=4, scheduler_interval="step")
    with pytest.raises(RuntimeError):
        fit(tmp_path / "b", 3, every_n_train_steps=4, scheduler_interval="step", extra=(CrashAt(7),))
    fit(tmp_path / "b", 3, every_n_train_steps=4, scheduler_interval="step",
        ckpt_path=tmp_path / "b/checkpoints/last.ckpt")
    assert_same_tensors(model_state(tmp_path / "a/checkpoints/last.ckpt"), model_state(tmp_path / "b/checkpoints/last.ckpt"))
    assert read_scalars(tmp_path / "b/tensorboard") == read_scalars(tmp_path / "a/tensorboard")


class NanLossFrom(ClassificationTask):
    """A task whose loss turns NaN at global step 8: epoch 0 is 13 micro-batches (5 steps),
    and micro-batches 6-8 of epoch 1 make its third step."""

    NAN_STEP, FIRST_NAN_CALL = 8, 13 + 7

    def training_step(self, batch: Any) -> Any:
        result = super().training_step(batch)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= self.FIRST_NAN_CALL:
            result.loss = result.loss * float("nan")
        return result


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteLossError) as error:
        fit(tmp_path, 4, every_n_train_steps=3, task_class=NanLossFrom)
    message = str(error.value)
    assert "\n" not in message
    assert f"step {NanLossFrom.NAN_STEP}" in message and str(last) in message
    state = load(last)
    assert state["loop"]["global_step"] == 6  # the step-6 save; nothing after it was written
    assert all(torch.isfinite(t).all() for t in state["model"].values())


class OverflowAt(Callback):
    """An update that overflowed: after optimizer step ``step`` one weight is inf while that
    step's loss (computed before the update) was finite. Runs before ModelCheckpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if trainer.optimizer_stepped and trainer.global_step == self.step:
            with torch.no_grad():
                next(task.model.parameters())[0, 0] = float("inf")


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(NonFiniteLossError) as error:
        fit(tmp_path, 4, every_n_train_steps=3, extra=(OverflowAt(9),))  # step 9 saves last.ckpt
    assert "non-finite weights after step 9" in str(error.value) and str(last) in str(error.value)
    state = load(last)
    assert state["loop"]["global_step"] == 6
    assert all(torch.isfinite(t).all() for t in state["model"].values())
