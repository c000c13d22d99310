"""The data path is open: dict batches with a collate_fn, iterable datasets, any iterable of
batches, and the DataLoader knobs; the built-in loaders still resume exactly mid-epoch, and
an iterable that cannot be positioned restarts its epoch (logged)."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset

from expkit.callbacks import ModelCheckpoint
from expkit.data import DataModule
from expkit.engine import Callback, Trainer, seed_everything
from expkit.engine.checkpoint import load
from expkit.tasks import StepResult, Task


def _tensors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    return x, (x[:, 0] > 0).long()


class Records(Dataset):
    """Samples are dicts, as many real data sets give them."""

    def __init__(self, n: int, seed: int) -> None:
        self.x, self.y = _tensors(n, seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"features": {"values": self.x[i]}, "label": int(self.y[i])}


def collate_records(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"features": {"values": torch.stack([s["features"]["values"] for s in samples])},
            "label": torch.tensor([s["label"] for s in samples])}


class Stream(IterableDataset):
    def __init__(self, n: int, seed: int) -> None:
        self.x, self.y = _tensors(n, seed)

    def __iter__(self):
        return iter(zip(self.x, self.y))


class DictData(DataModule):
    """A datamodule of the researcher's own: dict samples and its own collate_fn."""

    collate_fn = staticmethod(collate_records)

    def _load(self) -> dict[str, Any]:
        return {"train": Records(90, 0), "val": Records(30, 1), "test": Records(30, 2)}


class StreamData(DataModule):
    def _load(self) -> dict[str, Any]:
        return {"train": Stream(90, 0), "val": Stream(30, 1), "test": Stream(30, 2)}


class ListOfBatches(DataModule):
    """Overrides the loaders: any iterable of (x, y) batches."""

    def setup(self, stage: str = "fit") -> None:
        pass

    def _batches(self, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = _tensors(90, seed)
        return [(x[i:i + 20], y[i:i + 20]) for i in range(0, 90, 20)]

    def train_loader(self, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
        return self._batches(0)

    def val_loader(self, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
        return self._batches(1)

    test_loader = val_loader


class AnyBatchTask(Task):
    """Reads (x, y) tuples, (x, y) lists or the nested dicts above."""

    def _step(self, batch: Any) -> StepResult:
        if isinstance(batch, dict):
            x, y = batch["features"]["values"], batch["label"]
        else:
            x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).sum(dtype=torch.float64) / len(y)
        return StepResult(loss=loss, metrics={"loss": loss.detach(), "acc": acc}, batch_size=len(y))

    training_step = validation_step = _step


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if trainer.optimizer_stepped and trainer.global_step == self.step:
            raise RuntimeError("stop here")


def _fit(data: DataModule, run_dir: Path, epochs: int = 2, ckpt_path: Path | None = None,
         extra: tuple = (), **trainer_options: Any) -> tuple[Trainer, Task]:
    seed_everything(0)
    task = AnyBatchTask(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2)),
                        optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9))
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", num_sanity_val_steps=0, log_every_n_steps=1,
                      callbacks=[*extra, ModelCheckpoint(dirpath=str(run_dir), monitor="val/acc",
                                                         every_n_train_steps=2)], **trainer_options)
    trainer.fit(task, data, ckpt_path=ckpt_path)
    return trainer, task


def _weights(task: Task) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in task.model.parameters()])


def test_dict_batches_with_a_collate_fn_train_and_resume_exactly_mid_epoch(tmp_path: Path):
    data = partial(DictData, batch_size=16, loader="dataloader")
    _, straight = _fit(data(), tmp_path / "straight")
    with pytest.raises(RuntimeError, match="stop here"):
        _fit(data(), tmp_path / "resumed", extra=(StopAt(9),))  # step 9 of 12: mid-epoch 1
    last = tmp_path / "resumed" / "last.ckpt"
    assert load(last)["data"]["train"]["position"] == 2  # saved at step 8, batch 2 of epoch 1
    trainer, resumed = _fit(data(), tmp_path / "resumed", ckpt_path=last)
    assert trainer.global_step == 12
    assert torch.equal(_weights(straight), _weights(resumed))
    assert trainer.callback_metrics["val/acc"] > 0.7  # it learned x[0] > 0


def test_dataloader_options_reach_the_workers(tmp_path: Path):
    data = DictData(batch_size=16, loader="dataloader", num_workers=1, persistent_workers=True,
                    prefetch_factor=3, pin_memory=False)
    trainer, _ = _fit(data, tmp_path, epochs=1)
    loader = trainer.train_loader.dataloader
    assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (1, True, 3)
    assert loader.collate_fn is collate_records and not loader.pin_memory
    assert trainer.global_step == 6


def test_an_iterable_dataset_trains_and_a_mid_epoch_resume_restarts_its_epoch(tmp_path: Path, caplog):
    trainer, _ = _fit(StreamData(batch_size=16), tmp_path / "a", epochs=1)
    assert trainer.global_step == 6 and trainer.callback_metrics["val/acc"] > 0.6  # 90 samples, batches of 16
    with pytest.raises(RuntimeError, match="stop here"):
        _fit(StreamData(batch_size=16), tmp_path / "c", extra=(StopAt(3),))
    with caplog.at_level(logging.WARNING, logger="expkit.engine.loaders"):
        trainer, _ = _fit(StreamData(batch_size=16), tmp_path / "c", ckpt_path=tmp_path / "c" / "last.ckpt")
    assert "cannot continue mid-epoch; epoch 0 starts again from its first batch" in caplog.text
    assert trainer.global_step == 2 + 6 + 6  # 2 steps before the checkpoint, then epochs 0 and 1 in full


def test_any_iterable_of_batches_with_accumulation(tmp_path: Path):
    trainer, task = _fit(ListOfBatches(), tmp_path, epochs=3, accumulate_grad_batches=2)
    assert trainer.global_step == 3 * 3  # 5 batches an epoch: cycles of 2, 2 and 1
    assert {"train/loss", "train/acc", "val/acc"} <= trainer.callback_metrics.keys()
    assert trainer.test(task, ListOfBatches())["test/acc"] == pytest.approx(trainer.callback_metrics["val/acc"])
