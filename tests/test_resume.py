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
        scheduler_interval: str = "epoch", task_class: type = ClassificationTask,
        checkpoint_options: dict[str, Any] | None = None, **trainer_options: Any) -> Trainer:
    """A small run with everything that can break exactness on: shuffling, dropout, momentum,
    a cosine schedule, gradient accumulation with a short last cycle, callbacks with state."""
    seed_everything(0)
    data = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=4, num_train=200, num_val=48, num_test=48,
                               batch_size=16, loader=loader, seed=3)
    model = MLP((1, 4, 4), 4, hidden_sizes=(16,), dropout=0.3)
    task = task_class(model, optimizer=partial(torch.optim.SGD, lr=0.2, momentum=0.9),
                      scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=12),
                      scheduler_interval=scheduler_interval)
    callbacks = [*extra, ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=every_n_train_steps,
                                         **(checkpoint_options or {})),
                 EarlyStopping(patience=20), LearningRateMonitor()]
    logger = TensorBoardLogger(save_dir=str(run_dir))
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", accumulate_grad_batches=3, num_sanity_val_steps=1,
                      log_every_n_steps=1, callbacks=callbacks, logger=logger, default_root_dir=run_dir,
                      **trainer_options)
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
    expected, resumed = read_scalars(straight["memory"]), read_scalars(tmp_path)
    assert "lr" in expected and "train/loss_step" in expected
    assert resumed == expected
    full, again = load(straight["memory"] / "checkpoints/last.ckpt"), load(tmp_path / "checkpoints/last.ckpt")
    # best score, epoch and file (a name, not a path: the run directories differ), early-stopping counter, lr
    assert full["callbacks"] == again["callbacks"]
    assert full["callbacks"]["ModelCheckpoint"]["best_model_file"] == "best.ckpt"
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
    resumed = read_scalars(tmp_path)
    assert_clean_steps(resumed)
    assert resumed == read_scalars(straight[loader])


def test_crash_after_an_epoch_end_checkpoint_logs_nothing_twice(straight: dict[str, Path], tmp_path: Path) -> None:
    # No step checkpoints: last.ckpt is from the end of epoch 1 (step 10); the crash is in epoch 2.
    with pytest.raises(RuntimeError):
        fit(tmp_path, 4, extra=(CrashAt(13),))
    fit(tmp_path, 4, ckpt_path=tmp_path / "checkpoints" / "last.ckpt")
    assert_same_tensors(model_state(straight["memory"] / "checkpoints/last.ckpt"),
                        model_state(tmp_path / "checkpoints/last.ckpt"))
    resumed = read_scalars(tmp_path)
    assert_clean_steps(resumed)
    assert resumed == read_scalars(straight["memory"])


def test_per_step_schedule_resumes_exactly_mid_epoch(tmp_path: Path) -> None:
    fit(tmp_path / "a", 3, every_n_train_steps=4, scheduler_interval="step")
    with pytest.raises(RuntimeError):
        fit(tmp_path / "b", 3, every_n_train_steps=4, scheduler_interval="step", extra=(CrashAt(7),))
    fit(tmp_path / "b", 3, every_n_train_steps=4, scheduler_interval="step",
        ckpt_path=tmp_path / "b/checkpoints/last.ckpt")
    assert_same_tensors(model_state(tmp_path / "a/checkpoints/last.ckpt"), model_state(tmp_path / "b/checkpoints/last.ckpt"))
    assert read_scalars(tmp_path / "b") == read_scalars(tmp_path / "a")


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


# ----------------------------------------------------------------------------- train.py, subprocesses

def last_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def issue_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The issue's check: 4 epochs straight in <a>; 2 epochs in <b>, then resumed to 4 in <b>."""
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    common = ("model=mlp", "seed=7", "trainer.num_sanity_val_steps=0")
    train(*common, "trainer.max_epochs=4", f"hydra.run.dir={a}")
    train(*common, "trainer.max_epochs=2", f"hydra.run.dir={b}")
    train(*common, f"ckpt_path={b}/checkpoints/last.ckpt", "trainer.max_epochs=4", f"hydra.run.dir={b}")
    return a, b


@pytest.mark.slow
def test_train_py_two_epochs_plus_resume_equals_four(issue_runs: tuple[Path, Path]) -> None:
    a, b = issue_runs
    assert_same_tensors(last_model(a), last_model(b))
    straight, resumed = read_scalars(a), read_scalars(b)
    assert_clean_steps(resumed)
    # The shorter run's own test at its end stays in the history; everything else is identical.
    assert {t: v for t, v in resumed.items() if not t.startswith("test/")} == \
        {t: v for t, v in straight.items() if not t.startswith("test/")}
    assert resumed["test/acc"][-1] == straight["test/acc"][-1]
    assert read_json(b / "metrics.json")["test/acc"] == read_json(a / "metrics.json")["test/acc"]


@pytest.mark.slow
def test_resume_refuses_a_changed_model_but_not_more_epochs(issue_runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, b = issue_runs
    proc = train("model=mlp", "seed=7", "model.hidden_sizes=[32]", f"ckpt_path={b}/checkpoints/last.ckpt",
                 "trainer.max_epochs=5", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "model.hidden_sizes" in errors[0] and "[128, 64]" in errors[0], proc.stderr
    assert not (tmp_path / "checkpoints").exists()


# A run long enough to be signalled mid-epoch: 625 batches an epoch, a log line every 20 steps.
SIGNAL_RUN = ("data=synthetic", "data.num_train=20000", "data.num_val=64", "data.num_test=64", "data.batch_size=32",
              "model.hidden_sizes=[32]", "model.dropout=0.1", "trainer.accumulate_grad_batches=2",
              "scheduler=step", "scheduler.step_size=1", "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0",
              "callbacks.progress_bar.log_every_n_steps=20", "test=false", "seed=5")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(*SIGNAL_RUN, f"hydra.run.dir={run_dir}")
    return run_dir


def run_until_signalled(run_dir: Path, signum: int) -> tuple[int, str]:
    """Start a training subprocess, send ``signum`` once it logs its first steps, wait for it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *SIGNAL_RUN, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "epoch 0 step 20:" in line:  # training is under way: signal it now
                proc.send_signal(signum)
                break
        _, rest = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + rest


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "resume"), [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGUSR1, False)],
                         ids=["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_saves_exits_75_and_resumes_exactly(uninterrupted: Path, tmp_path: Path, signum: int,
                                                   resume: bool) -> None:
    """SLURM sends SIGTERM (or SIGUSR1 with --signal); Ctrl-C sends SIGINT. All three take the
    same path; the resume is run for two of them to keep the test short."""
    code, log = run_until_signalled(tmp_path, signum)
    assert code == EXIT_PREEMPTED, log[-3000:]
    assert f"{signum.name} received: saved {tmp_path}/checkpoints/last.ckpt" in log
    assert "Traceback" not in log
    assert read_json(tmp_path / "status.json")["status"] == "preempted"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["loop"]["epoch"] == 0 and not state["loop"]["epoch_finished"]  # mid-epoch
    assert 0 < state["data"]["train"]["position"] < 625
    if not resume:
        return
    train(*SIGNAL_RUN, "ckpt_path=last", f"hydra.run.dir={tmp_path}")
    assert_same_tensors(last_model(uninterrupted), last_model(tmp_path))
    resumed = read_scalars(tmp_path)
    assert_clean_steps(resumed)
    assert resumed == read_scalars(uninterrupted)


def test_a_run_stopped_by_max_steps_mid_epoch_resumes_exactly(tmp_path):
    """max_steps stops part-way through an epoch; resuming with a larger max_steps must
    finish that epoch (same data order, same scheduler steps) as an uninterrupted run."""
    import functools

    import torch

    from expkit.callbacks import ModelCheckpoint
    from expkit.data import DigitsDataModule
    from expkit.engine import Trainer, seed_everything
    from expkit.models import MLP
    from expkit.tasks import ClassificationTask

    def task():
        seed_everything(0)
        return ClassificationTask(MLP((1, 8, 8), 10, dropout=0.2),
                                  optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
                                  scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5))

    def trainer(max_steps, directory):
        return Trainer(max_epochs=3, max_steps=max_steps, num_sanity_val_steps=0, accelerator="cpu",
                       callbacks=[ModelCheckpoint(dirpath=str(directory))])

    straight = task()
    trainer(50, tmp_path / "straight").fit(straight, DigitsDataModule(batch_size=64))

    first = task()
    trainer(27, tmp_path / "split").fit(first, DigitsDataModule(batch_size=64))  # epoch 1, batch 7 of 20
    saved = torch.load(tmp_path / "split" / "last.ckpt", weights_only=True)
    assert saved["loop"]["global_step"] == 27 and not saved["loop"]["epoch_finished"]
    resumed = task()
    again = trainer(50, tmp_path / "split")
    again.fit(resumed, DigitsDataModule(batch_size=64), ckpt_path=tmp_path / "split" / "last.ckpt")
    assert again.global_step == 50
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


RUNNER_SCRIPT = '''
import functools, json, os, signal, sys
import torch
from expkit.callbacks import ModelCheckpoint
from expkit.data import SyntheticDataModule
from expkit.engine import Callback, Trainer, seed_everything
from expkit.models import MLP
from expkit.tasks import ClassificationTask

out = sys.argv[1]

def requeue(signum, frame):  # what a job runner (submitit) installs before calling the job
    state = torch.load(os.path.join(out, "last.ckpt"), weights_only=True)
    with open(os.path.join(out, "runner.json"), "w") as f:
        json.dump({"signal": signum, "step_on_disk": state["loop"]["global_step"]}, f)
    sys.exit(3)

signal.signal(signal.SIGUSR2, requeue)

class Ready(Callback):
    def on_train_batch_end(self, trainer, task, result, batch, batch_idx):
        if trainer.global_step == 5:
            print("READY", flush=True)

seed_everything(0)
task = ClassificationTask(MLP((1, 8, 8), 10), optimizer=functools.partial(torch.optim.SGD, lr=0.01))
trainer = Trainer(max_epochs=10_000, num_sanity_val_steps=0, accelerator="cpu",
                  callbacks=[ModelCheckpoint(dirpath=out), Ready()])
trainer.fit(task, SyntheticDataModule(num_train=4096, batch_size=8))
'''


@pytest.mark.slow
def test_sigusr2_saves_then_hands_over_to_the_job_runners_handler(tmp_path: Path) -> None:
    """submitit requeues SLURM jobs from its own SIGUSR2 handler: the engine saves last.ckpt
    at the next step boundary first, then calls that handler (which here exits 3)."""
    script = tmp_path / "job.py"
    script.write_text(RUNNER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    proc.send_signal(signal.SIGUSR2)
    assert proc.wait(timeout=60) == 3
    runner = read_json(tmp_path / "runner.json")
    assert runner["signal"] == signal.SIGUSR2
    assert runner["step_on_disk"] >= 5  # the checkpoint was on disk when the runner took over
