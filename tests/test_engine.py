"""Engine unit tests through the plain-Python API (no Hydra)."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from expkit.callbacks import EarlyStopping, ModelCheckpoint
from expkit.data import DigitsDataModule, SyntheticDataModule
from expkit.engine import Callback, Trainer, seed_everything
from expkit.engine.checkpoint import load
from expkit.models import MLP
from expkit.tasks import ClassificationTask


def make_task(seed: int = 0, optimizer=None, **mlp) -> ClassificationTask:
    seed_everything(seed)
    optimizer = optimizer or functools.partial(torch.optim.SGD, lr=0.1)
    return ClassificationTask(MLP((1, 8, 8), 10, **mlp), optimizer=optimizer)


def quiet(**kwargs) -> Trainer:
    kwargs.setdefault("num_sanity_val_steps", 0)
    kwargs.setdefault("accelerator", "cpu")
    return Trainer(**kwargs)


def params(task: ClassificationTask) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in task.model.parameters()])


def test_accumulating_k_batches_equals_one_k_times_larger_batch():
    big, small = make_task(), make_task()
    quiet(max_epochs=2).fit(big, DigitsDataModule(batch_size=64, seed=3))
    # 1258 training samples: the last cycle has uneven micro-batches (16, 16, 10),
    # which must still equal the last 42-sample batch of the big run.
    quiet(max_epochs=2, accumulate_grad_batches=4).fit(small, DigitsDataModule(batch_size=16, seed=3))
    assert torch.allclose(params(big), params(small), atol=1e-6), (params(big) - params(small)).abs().max()


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the total gradient norm it was asked to apply."""

    norms: list[float] = []

    def step(self, closure=None):
        grads = [p.grad.flatten() for g in self.param_groups for p in g["params"] if p.grad is not None]
        RecordingSGD.norms.append(float(torch.cat(grads).norm()))
        return super().step(closure)


def test_gradient_clipping_bounds_the_gradient_norm():
    RecordingSGD.norms = []
    task = make_task(optimizer=functools.partial(RecordingSGD, lr=0.5))
    quiet(max_epochs=1).fit(task, DigitsDataModule(batch_size=64))
    unclipped = max(RecordingSGD.norms)
    assert unclipped > 0.5  # so clipping at 0.1 really has work to do

    RecordingSGD.norms = []
    task = make_task(optimizer=functools.partial(RecordingSGD, lr=0.5))
    quiet(max_epochs=1, gradient_clip_val=0.1).fit(task, DigitsDataModule(batch_size=64))
    assert len(RecordingSGD.norms) == 20
    assert max(RecordingSGD.norms) <= 0.1 + 1e-5


def test_early_stopping_stops_when_the_metric_stalls():
    task = make_task(optimizer=functools.partial(torch.optim.SGD, lr=0.0))  # weights never change
    stopper = EarlyStopping(monitor="val/loss", mode="min", patience=2)
    trainer = quiet(max_epochs=20, callbacks=[stopper])
    trainer.fit(task, DigitsDataModule(batch_size=64))
    assert stopper.stopped_epoch == 2  # epoch 0 sets the best, 1 and 2 do not improve
    assert trainer.epoch == 2


class ValHistory(Callback):
    def __init__(self) -> None:
        self.history: list[float] = []

    def on_validation_end(self, trainer, task) -> None:
        if trainer.fitting:
            self.history.append(trainer.callback_metrics["val/loss"])


@pytest.mark.parametrize("monitor,mode", [("val/loss", "min"), ("val/acc", "max")])
def test_best_checkpoint_follows_the_monitored_metric(tmp_path: Path, monitor: str, mode: str):
    history = ValHistory()
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path), monitor=monitor, mode=mode)
    task = make_task(optimizer=functools.partial(torch.optim.SGD, lr=0.3, momentum=0.9))
    trainer = quiet(max_epochs=6, callbacks=[history, checkpoint])
    trainer.fit(task, DigitsDataModule(batch_size=64))

    best = load(tmp_path / "best.ckpt")
    scores = [best["callback_metrics"][monitor]]
    assert best["callbacks"]["ModelCheckpoint"]["best_score"] == scores[0]
    values = {"val/loss": history.history}
    if monitor == "val/loss":
        expected_epoch = min(range(len(history.history)), key=history.history.__getitem__)
        assert best["loop"]["epoch"] == expected_epoch
    assert best["loop"]["epoch"] == checkpoint.best_epoch
    # The weights in best.ckpt reproduce the best score.
    task.model.load_state_dict(best["model"])
    result = trainer.validate(task, DigitsDataModule(batch_size=64))
    assert result[monitor] == pytest.approx(checkpoint.best_score, abs=1e-6)
    assert values  # history recorded every validation
    last = load(tmp_path / "last.ckpt")
    assert last["loop"]["epoch"] == 5 and last["loop"]["epoch_finished"]


def test_epoch_metrics_are_exact_over_uneven_batches():
    task = make_task(optimizer=functools.partial(torch.optim.SGD, lr=0.0))
    data = DigitsDataModule(batch_size=64, eval_batch_size=64)  # 180 val samples: 64 + 64 + 52
    trainer = quiet(max_epochs=1)
    trainer.fit(task, data)
    x, y = data.splits["val"]
    with torch.no_grad():
        logits = task.model(x)
    assert trainer.callback_metrics["val/loss"] == pytest.approx(float(F.cross_entropy(logits, y)), abs=1e-6)
    correct = int((logits.argmax(1) == y).sum())
    assert trainer.callback_metrics["val/acc"] == correct / len(y)  # exactly, not a mean of batch means


def test_limits_max_steps_and_fast_dev_run():
    seen = []

    class Count(Callback):
        def on_train_batch_end(self, trainer, task, result, batch, batch_idx):
            seen.append((trainer.epoch, batch_idx, result.batch_size))

    trainer = quiet(max_epochs=3, limit_train_batches=0.25, callbacks=[Count()])
    trainer.fit(make_task(), DigitsDataModule(batch_size=64))
    assert [e for e, _, _ in seen] == [0] * 5 + [1] * 5 + [2] * 5  # 25% of 20 batches per epoch

    seen.clear()
    trainer = quiet(max_epochs=10, max_steps=7, callbacks=[Count()])
    trainer.fit(make_task(), DigitsDataModule(batch_size=64))
    assert trainer.global_step == 7 and len(seen) == 7

    seen.clear()
    trainer = quiet(max_epochs=10, fast_dev_run=True, callbacks=[Count()])
    trainer.fit(make_task(), DigitsDataModule(batch_size=64))
    assert len(seen) == 1 and trainer.global_step == 1


def test_training_learns_and_test_uses_best_checkpoint(tmp_path: Path):
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path))
    task = make_task(optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    trainer = quiet(max_epochs=5, callbacks=[checkpoint])
    data = SyntheticDataModule(input_shape=(1, 8, 8), num_train=1024, batch_size=64)
    trainer.fit(task, data)
    result = trainer.test(task, data, ckpt_path="best")
    assert set(result) == {"test/acc", "test/loss"}
    assert result["test/acc"] > 0.5  # ten classes: chance is 0.1


@pytest.mark.parametrize("kwargs,key", [
    ({"max_epochs": 0}, "max_epochs"), ({"precision": "8-true"}, "precision"),
    ({"accumulate_grad_batches": 0}, "accumulate_grad_batches"), ({"accelerator": "tpu"}, "accelerator"),
])
def test_bad_trainer_arguments_name_the_argument(kwargs, key):
    with pytest.raises(ValueError, match=key):
        Trainer(**kwargs)


def test_fit_removes_temporary_files_a_killed_save_left_behind(tmp_path: Path):
    stale = tmp_path / ".last.ckpt.abc123.tmp"  # what save_atomic leaves when killed mid-write
    stale.write_bytes(b"partial")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    quiet(max_epochs=1, callbacks=[ModelCheckpoint(dirpath=str(tmp_path))]).fit(make_task(), DigitsDataModule())
    assert not stale.exists() and keep.exists() and (tmp_path / "last.ckpt").is_file()
