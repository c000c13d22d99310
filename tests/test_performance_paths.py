"""The fast paths keep the engine's behaviour: start-up imports only what the config uses,
metrics stay exact, non-finite losses are still caught at their step, checkpoints
written in the background are complete when fit returns."""
from __future__ import annotations

import random
import re
from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import FAST, train
from expkit.engine import Callback, NonFiniteLossError, Trainer
from expkit.engine import checkpoint as ckpt
from expkit.engine.metrics import MeanAccumulator
from expkit.tasks import ClassificationTask


def imported_modules(*overrides: str, tmp_path: Path) -> set[str]:
    """Every module a real ``python -X importtime train.py`` run imported."""
    proc = train(*overrides, *FAST, "test=false", f"hydra.run.dir={tmp_path}",
                 env={"PYTHONPROFILEIMPORTTIME": "1"})
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", proc.stderr, flags=re.M))


@pytest.mark.slow
def test_digits_without_logger_imports_neither_torchvision_nor_tensorboard(tmp_path):
    modules = imported_modules("data=digits", "logger=none", tmp_path=tmp_path)
    assert {"torch", "hydra", "expkit.engine.trainer"} <= modules  # the parser sees real imports
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torchvision", "tensorboard", "sklearn", "lightning")
                   or m.startswith("torch.utils.tensorboard"))
    assert heavy == []


@pytest.mark.slow
def test_digits_with_tensorboard_still_skips_torchvision(tmp_path):
    modules = imported_modules("data=digits", "logger=tensorboard", tmp_path=tmp_path)
    assert "torch.utils.tensorboard" in modules  # the logger really wrote events
    assert not any(m.split(".")[0] == "torchvision" for m in modules)


# ------------------------------------------------------------------ metrics
def naive_sums(steps: list[dict[str, torch.Tensor]], sizes: list[int]) -> dict[str, torch.Tensor]:
    """The definition: float64(value) * batch_size added one step at a time."""
    sums: dict[str, torch.Tensor] = {}
    for values, size in zip(steps, sizes):
        for name, value in values.items():
            weighted = value.detach().to(torch.float64) * size
            sums[name] = sums[name] + weighted if name in sums else weighted
    return sums


def test_packed_accumulator_equals_the_sequential_definition_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    steps = [{"loss": torch.rand((), generator=gen) * 3, "acc": torch.rand((), generator=gen).double()}
             for _ in range(200)]
    sizes = [64] * 199 + [41]
    acc = MeanAccumulator()
    for values, size in zip(steps, sizes):
        acc.update(values, size)
    expected = naive_sums(steps, sizes)
    for name in expected:
        assert acc.sums[name].item() == expected[name].item()
    means = acc.compute()
    assert means == {n: expected[n].item() / sum(sizes) for n in sorted(expected)}
    restored = MeanAccumulator()
    restored.load_state_dict(acc.state_dict(), torch.device("cpu"))
    assert restored.compute() == means


def test_accumulator_resumed_from_its_state_sums_exactly_as_without_the_break():
    # Rows are summed in bulk when read; a state taken between reads keeps the rows
    # unsummed, so the resumed accumulator groups its additions as the uninterrupted one.
    # (Values that cancel make every grouping show in the result.)
    values = [{"loss": torch.tensor([1e17, 3.0, -1e17][i % 3] + i, dtype=torch.float64)} for i in range(300)]
    straight = MeanAccumulator()
    for i, step in enumerate(values):
        straight.update(step, 1)
        if i == 150:
            straight.compute()  # a read (a step log) in both runs
    first, resumed = MeanAccumulator(), MeanAccumulator()
    for i, step in enumerate(values[:200]):
        first.update(step, 1)
        if i == 150:
            first.compute()
    state = first.state_dict()
    assert state["rows"] is not None and len(state["rows"]) == 49  # kept, not summed
    resumed.load_state_dict(state, torch.device("cpu"))
    for step in values[200:]:
        resumed.update(step, 1)
    assert resumed.compute() == straight.compute()
    assert resumed.count == straight.count == 300


def test_accumulator_merges_metric_names_that_change():
    acc = MeanAccumulator()
    acc.update({"loss": torch.tensor(1.0)}, 2)
    acc.update({"loss": torch.tensor(3.0), "acc": torch.tensor(0.5)}, 2)
    assert acc.compute() == {"acc": 0.25, "loss": 2.0}
    acc.reset()
    assert acc.compute() == {}


# ------------------------------------------------------------- the engine
def digits_task(cls=ClassificationTask) -> ClassificationTask:
    from expkit.models import MLP

    torch.manual_seed(0)
    return cls(MLP((1, 8, 8), 10), optimizer=partial(torch.optim.Adam, lr=1e-3))


def digits() -> object:
    from expkit.data import DigitsDataModule

    return DigitsDataModule(batch_size=64)


@pytest.mark.parametrize("accumulate, expected_step", [(1, 37), (3, 13)])
def test_non_finite_loss_is_reported_at_its_step(tmp_path, accumulate, expected_step):
    class NanAt37(ClassificationTask):
        calls = 0

        def training_step(self, batch):
            result = super().training_step(batch)
            NanAt37.calls += 1
            if NanAt37.calls == 37:
                result.loss = result.loss * float("nan")
            return result

    trainer = Trainer(max_epochs=3, num_sanity_val_steps=0, accumulate_grad_batches=accumulate,
                      log_every_n_steps=5, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=f"non-finite loss at step {expected_step} "):
        trainer.fit(digits_task(NanAt37), digits())


def test_only_callbacks_that_implement_the_batch_hook_are_called_per_batch(tmp_path):
    calls = {"batch": 0, "instance": 0}

    class Counts(Callback):
        def on_train_batch_end(self, trainer, task, result, batch, batch_idx):
            calls["batch"] += 1

    class EpochOnly(Callback):
        def on_train_epoch_end(self, trainer, task):
            pass

    per_instance = Callback()
    per_instance.on_train_batch_end = lambda *args: calls.__setitem__("instance", calls["instance"] + 1)
    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, callbacks=[Counts(), EpochOnly(), per_instance],
                      default_root_dir=tmp_path)
    assert [type(h.__self__).__name__ for h in trainer._overriding("on_train_batch_end")
            if hasattr(h, "__self__")] == ["Counts"]
    trainer.fit(digits_task(), digits())
    assert calls == {"batch": trainer.global_step, "instance": trainer.global_step}


def test_in_memory_path_is_the_default_and_trains_like_the_dataloader_path(tmp_path):
    """digits is served by TensorLoader; forcing the DataLoader path gives the same batches and weights."""
    from expkit.data import DigitsDataModule

    weights = {}
    for loader in ("auto", "dataloader"):
        trainer = Trainer(max_epochs=2, num_sanity_val_steps=0, default_root_dir=tmp_path / loader)
        task = digits_task()
        trainer.fit(task, DigitsDataModule(batch_size=64, loader=loader))
        kind = type(trainer.train_loader).__name__
        assert kind == ("TensorLoader" if loader == "auto" else "TorchDataLoader")
        weights[loader] = task.model.state_dict()
    for key, value in weights["auto"].items():
        assert torch.equal(value, weights["dataloader"][key])


# ------------------------------------------------------------- checkpoints
def test_background_checkpoints_are_complete_when_fit_returns(tmp_path):
    from expkit.callbacks import ModelCheckpoint

    trainer = Trainer(max_epochs=2, num_sanity_val_steps=0, default_root_dir=tmp_path,
                      callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "ckpts"), monitor="val/acc")])
    task = digits_task()
    trainer.fit(task, digits())
    assert not ckpt._pending
    assert sorted(p.name for p in (tmp_path / "ckpts").iterdir()) == ["best.ckpt", "last.ckpt"]  # no temp files
    last = ckpt.load(tmp_path / "ckpts" / "last.ckpt")
    assert last["loop"]["global_step"] == trainer.global_step
    for key, value in task.model.state_dict().items():
        assert torch.equal(last["model"][key], value)


def test_best_and_last_of_one_epoch_are_serialized_once_with_identical_bytes(tmp_path):
    from expkit.callbacks import ModelCheckpoint

    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, default_root_dir=tmp_path,
                      callbacks=[ModelCheckpoint(dirpath=str(tmp_path), monitor="val/acc")])
    trainer.fit(digits_task(), digits())
    assert (tmp_path / "best.ckpt").read_bytes() == (tmp_path / "last.ckpt").read_bytes()
    assert trainer.last_checkpoint_path == str(tmp_path / "last.ckpt")


def test_load_waits_for_a_background_save(tmp_path):
    state = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "model": {"w": torch.ones(3)}}
    path = ckpt.save_atomic(state, tmp_path / "a.ckpt", background=True)
    assert torch.equal(ckpt.load(path)["model"]["w"], torch.ones(3))
    assert not ckpt._pending


def test_python_rng_state_round_trips_as_a_tensor_and_from_old_lists():
    random.seed(123)
    state = ckpt.capture_rng()
    assert isinstance(state["python"]["state"], torch.Tensor)
    expected = [random.random() for _ in range(3)]
    ckpt.restore_rng(state)
    assert [random.random() for _ in range(3)] == expected
    state["python"]["state"] = state["python"]["state"].tolist()  # checkpoints written before the change
    ckpt.restore_rng(state)
    assert [random.random() for _ in range(3)] == expected


def test_a_forked_child_saves_with_its_own_writer_thread(tmp_path):
    import os

    state = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "model": {"w": torch.ones(2)}}
    ckpt.save_atomic(state, tmp_path / "parent.ckpt", background=True)  # the parent's writer exists now
    ckpt.wait_for_saves()
    pid = os.fork()
    if pid == 0:  # child: a background save must finish, not wait on the parent's thread
        try:
            ckpt.save_atomic(state, tmp_path / "child.ckpt", background=True)
            ckpt.wait_for_saves()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert torch.equal(ckpt.load(tmp_path / "child.ckpt")["model"]["w"], torch.ones(2))
