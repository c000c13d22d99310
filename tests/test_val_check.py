"""Validation inside the epoch (``trainer.val_check_interval``) and the top-k checkpoints:
where validations happen, what is saved there, and that a run resumed from a checkpoint
saved at a mid-epoch validation ends exactly like one that was never interrupted."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import read_scalars
from expkit.engine.checkpoint import load
from expkit.errors import ConfigError
from test_resume import CrashAt, assert_clean_steps, assert_same_tensors, fit, model_state

# test_resume's run: 13 batches an epoch, 3 accumulated per step: steps end on batches 2, 5, 8, 11, 12.
TOP_K = {"monitor": "val/acc", "save_top_k": 3}


def val_steps(run_dir: Path) -> list[int]:
    return [step for step, _ in read_scalars(run_dir)["val/acc"]]


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs validated at each half of the epoch (steps 2 and 4 of 5) and at its end."""
    run_dir = tmp_path_factory.mktemp("halves")
    fit(run_dir, 3, val_check_interval=0.5, checkpoint_options=TOP_K)
    return run_dir


def test_a_fraction_validates_at_those_parts_of_each_epoch(halves: Path) -> None:
    assert val_steps(halves) == [2, 4, 5, 7, 9, 10, 12, 14, 15]


def test_a_number_validates_every_n_steps_and_never_twice_at_one_step(tmp_path: Path) -> None:
    fit(tmp_path, 3, val_check_interval=3)
    assert val_steps(tmp_path) == [3, 5, 6, 9, 10, 12, 15]  # step 15 ends the last epoch: validated once


def test_a_fraction_needs_a_loader_with_a_length(tmp_path: Path) -> None:
    from expkit.engine.val_check import ValCheck

    with pytest.raises(ConfigError, match="val_check_interval=0.25"):
        ValCheck(0.25, None, None)


def test_the_top_k_files_are_the_k_best_validations(halves: Path) -> None:
    scores = read_scalars(halves)["val/acc"]
    state = load(halves / "checkpoints" / "last.ckpt")["callbacks"]["ModelCheckpoint"]
    kept = state["top_k"]
    best_three = sorted((v for _, v in scores), reverse=True)[:3]  # TensorBoard keeps float32
    assert [e["score"] for e in kept] == pytest.approx(best_three, abs=1e-6)
    names = {p.name for p in (halves / "checkpoints").iterdir()}
    assert names == {"best.ckpt", "last.ckpt", *(e["file"] for e in kept)}
    for entry in kept:
        assert entry["file"] == f"epoch={entry['epoch']}-step={entry['step']}-val_acc={entry['score']:.4f}.ckpt"
        assert load(halves / "checkpoints" / entry["file"])["loop"]["global_step"] == entry["step"]
    best = load(halves / "checkpoints" / "best.ckpt")
    assert best["loop"]["global_step"] == kept[0]["step"] == state["best_step"]
    assert_same_tensors(best["model"], model_state(halves / "checkpoints" / kept[0]["file"]))


def test_a_crash_after_a_mid_epoch_validation_resumes_exactly(halves: Path, tmp_path: Path) -> None:
    # The validation at step 7 (batch 5 of epoch 1) saved last.ckpt; the crash at step 8 loses step 8.
    with pytest.raises(RuntimeError, match="crash at step 8"):
        fit(tmp_path, 3, val_check_interval=0.5, checkpoint_options=TOP_K, extra=(CrashAt(8),))
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = load(last)
    assert (state["loop"]["global_step"], state["loop"]["epoch"], state["loop"]["epoch_finished"]) == (7, 1, False)
    assert state["data"]["train"]["position"] == 6
    fit(tmp_path, 3, val_check_interval=0.5, checkpoint_options=TOP_K, ckpt_path=last)
    assert_same_tensors(model_state(halves / "checkpoints/last.ckpt"), model_state(last))
    resumed = read_scalars(tmp_path)
    assert_clean_steps(resumed)
    assert resumed == read_scalars(halves)
    full, again = load(halves / "checkpoints/last.ckpt"), load(last)
    assert full["callbacks"] == again["callbacks"]  # top-k, best, early stopping: the same bookkeeping
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {p.name for p in (halves / "checkpoints").iterdir()}


def test_save_top_k_zero_keeps_no_best_and_save_last_false_no_last(tmp_path: Path) -> None:
    fit(tmp_path, 2, checkpoint_options={"save_top_k": 0, "save_last": False})
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_every_n_epochs_writes_last_every_n_epochs(tmp_path: Path) -> None:
    fit(tmp_path, 3, checkpoint_options={"every_n_epochs": 2, "save_top_k": 0})
    assert load(tmp_path / "checkpoints" / "last.ckpt")["loop"]["epoch"] == 1  # epoch 1 (the 2nd), not 2


def test_a_per_step_schedule_logs_lr_at_every_step_log(tmp_path: Path) -> None:
    fit(tmp_path, 1, scheduler_interval="step")  # LearningRateMonitor(logging_interval="auto")
    assert [step for step, _ in read_scalars(tmp_path)["lr"]] == [1, 2, 3, 4, 5]


def test_the_gradient_norm_before_clipping_is_logged_when_clipping_is_on(tmp_path: Path) -> None:
    fit(tmp_path / "clipped", 1, gradient_clip_val=0.01)
    norms = read_scalars(tmp_path / "clipped")["train/grad_norm"]
    assert [step for step, _ in norms] == [1, 2, 3, 4, 5]
    assert all(value > 0.01 for _, value in norms)  # before clipping: above the clip value
    fit(tmp_path / "plain", 1)
    assert "train/grad_norm" not in read_scalars(tmp_path / "plain")
    fit(tmp_path / "asked", 1, log_grad_norm=True)
    assert len(read_scalars(tmp_path / "asked")["train/grad_norm"]) == 5


def test_samples_per_second_is_logged_at_every_step_log_and_counts_training_time_only(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    fit(tmp_path, 2, val_check_interval=0.5)
    wall = time.perf_counter() - start
    rates = read_scalars(tmp_path, timing=True)["train/samples_per_s"]
    assert [step for step, _ in rates] == list(range(1, 11))  # test_resume's run logs every step
    assert "train/samples_per_s" not in read_scalars(tmp_path)  # kept out of bit-for-bit comparisons
    # Each step of 3 micro-batches of 16 samples (the epoch's last: one batch of 8) took
    # samples / rate seconds; together no more than the whole fit.
    samples = [48, 48, 48, 48, 8] * 2
    seconds = [n / rate for n, (_, rate) in zip(samples, rates)]
    assert all(s > 0 for s in seconds) and sum(seconds) < wall
