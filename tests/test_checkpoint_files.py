"""Checkpoint files: what they hold, that writes are atomic under SIGKILL, and that bad files
are refused with one line naming the file, from Python and from ``train.py``."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import socket
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import FAST, read_json, train
from expkit.callbacks import ModelCheckpoint
from expkit.data import SyntheticDataModule
from expkit.engine import CheckpointError, Trainer, seed_everything
from expkit.engine.checkpoint import FORMAT, FORMAT_VERSION, load, save_atomic
from expkit.models import MLP
from expkit.tasks import ClassificationTask


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of train.py with a scheduler, saving last.ckpt mid-epoch as well."""
    run_dir = tmp_path_factory.mktemp("trained")
    train(*FAST, "scheduler=step", "callbacks.model_checkpoint.every_n_train_steps=7", "test=false",
          f"hydra.run.dir={run_dir}")
    return run_dir


def assert_plain(obj: Any, where: str = "checkpoint") -> None:
    """Only tensors and plain Python containers and scalars (what weights_only accepts)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, (str, int)), f"{where}: key {key!r}"
            assert_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            assert_plain(value, f"{where}[{i}]")
    else:
        assert obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)), f"{where}: {type(obj)}"


def test_train_py_checkpoint_holds_everything_and_loads_weights_only(trained: Path) -> None:
    state = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert_plain(state)
    for key in ("model", "optimizer", "scheduler", "grad_scaler", "loop", "data", "rng", "callbacks", "config",
                "versions", "train_metrics"):
        assert key in state, key
    assert state["format"] == FORMAT and state["scheduler"]["step_size"] == 3
    assert {"epoch", "global_step", "epoch_finished"} <= state["loop"].keys()
    train_data = state["data"]["train"]
    assert {"epoch", "position", "order"} <= train_data.keys()  # position in the epoch, its sample order
    assert sorted(train_data["order"].tolist()) == list(range(len(train_data["order"])))
    assert {"python", "numpy", "torch"} <= state["rng"].keys()
    assert state["callbacks"]["ModelCheckpoint"]["best_score"] is not None
    assert "wait" in state["callbacks"]["EarlyStopping"]
    assert type(state["config"]) is dict and state["config"]["model"]["hidden_sizes"] == [128, 64]
    assert state["config"]["trainer"]["default_root_dir"] == str(trained)  # resolved, no interpolation left
    assert state["versions"]["torch"] == torch.__version__ and state["versions"]["expkit"]
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in state["model"])
    assert state["optimizer"]["state"] and state["optimizer"]["param_groups"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrapped_models_save_plain_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP (a real gloo process group of one) and torch.compile wrap the model while it trains;
    checkpoints hold the plain module's keys either way."""
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    seed_everything(0)
    data = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=3, num_train=64, num_val=16, num_test=16,
                               batch_size=16)
    task = ClassificationTask(MLP((1, 4, 4), 3, hidden_sizes=(8,)), optimizer=partial(torch.optim.SGD, lr=0.1))
    seen: list[type] = []

    class Save(ModelCheckpoint):
        def on_train_batch_end(self, trainer: Any, task: Any, *args: Any) -> None:
            seen.append(type(task.model))
            trainer.save_checkpoint(self.dirpath / "ddp.ckpt")

    trainer = Trainer(max_epochs=1, accelerator="cpu", strategy="ddp", num_sanity_val_steps=0,
                      callbacks=[Save(dirpath=str(tmp_path))], default_root_dir=tmp_path)
    try:
        trainer.fit(task, data)
    finally:
        torch.distributed.destroy_process_group()
    assert seen[0] is torch.nn.parallel.DistributedDataParallel
    plain = set(task.model.state_dict())
    assert set(load(tmp_path / "ddp.ckpt")["model"]) == plain

    task.model = torch.compile(task.model)  # a real OptimizedModule; never called, so nothing compiles
    assert all(k.startswith("_orig_mod.") for k in task.model.state_dict())
    assert set(trainer.state_dict()["model"]) == plain


def _save_forever(path: Path, first: int, pipe: Any) -> None:
    """Child process: save bigger and bigger counters in a loop, reporting each finished save."""
    i = first
    while True:
        i += 1
        save_atomic({"format": FORMAT, "format_version": FORMAT_VERSION, "i": i,
                     "model": {"w": torch.full((1_000_000,), float(i))}}, path)
        pipe.send(i)


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    context = multiprocessing.get_context("fork")  # no interpreter start per kill
    newest = 0
    for _ in range(6):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(target=_save_forever, args=(path, newest, sender))
        child.start()
        finished = [receiver.recv()]  # it is saving in a loop now
        time.sleep(rng.uniform(0.0, 0.2))  # a random moment to kill at, not a synchronisation
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        while receiver.poll():
            finished.append(receiver.recv())
        state = load(path)
        # One whole save: the newest reported, or one that finished just before the kill.
        assert state["i"] >= finished[-1]
        assert torch.equal(state["model"]["w"], torch.full((1_000_000,), float(state["i"])))
        newest = state["i"]
    assert newest > 6  # it really saved many times


def _write_bad_files(directory: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the reason the error must give)."""
    truncated = directory / "truncated.ckpt"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    noise = directory / "noise.ckpt"
    noise.write_bytes(random.Random(1).randbytes(5000))
    foreign = directory / "foreign.ckpt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    pickled = directory / "pickled.ckpt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model": {},
                "args": argparse.Namespace(lr=0.1)}, pickled)
    return {"truncated": (truncated, "corrupt, truncated or not a checkpoint"),
            "noise": (noise, "corrupt"),
            "foreign": (foreign, "not an expkit checkpoint"),
            "pickled": (pickled, "arbitrary pickled objects")}


BAD = ["truncated", "noise", "foreign", "pickled"]


@pytest.fixture(scope="module")
def bad_files(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _write_bad_files(tmp_path_factory.mktemp("bad"), trained / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("name", BAD)
def test_load_refuses_bad_files_in_one_line(bad_files: dict[str, tuple[Path, str]], name: str) -> None:
    path, reason = bad_files[name]
    with pytest.raises(CheckpointError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and reason in message, message


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD)
def test_train_py_refuses_bad_files_in_one_line(bad_files: dict[str, tuple[Path, str]], name: str,
                                                 tmp_path: Path) -> None:
    path, reason = bad_files[name]
    proc = train(*FAST, f"ckpt_path={path}", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(path) in errors[0] and reason in errors[0], proc.stderr
    assert read_json(tmp_path / "status.json")["status"] == "failed"
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_ckpt_path_last_needs_a_last_checkpoint(tmp_path: Path) -> None:
    proc = train(*FAST, "ckpt_path=last", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{tmp_path}/checkpoints/last.ckpt does not exist" in errors[0], proc.stderr


@pytest.mark.slow
def test_train_py_stops_on_a_non_finite_loss(tmp_path: Path) -> None:
    proc = train(*FAST, "optimizer=sgd", "optimizer.lr=1e30", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "non-finite loss at step 2" in errors[0], proc.stderr
    assert "Last good checkpoint: none saved yet" in errors[0]
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
