"""A checkpoint write that fails in the background stops training at the next step boundary,
with one line naming the file and the OS reason, and "saved" is logged only for files that
are really in place."""
from __future__ import annotations

import functools
import logging

import pytest
import torch

from fault_helpers import tmpfs

from expkit.callbacks import ModelCheckpoint
from expkit.data import DigitsDataModule
from expkit.engine import Trainer, seed_everything
from expkit.engine.checkpoint import CheckpointWriteError, load
from expkit.models import MLP
from expkit.tasks import ClassificationTask

STEPS_PER_EPOCH = 20  # 1,257 digits in batches of 64


def test_a_failed_background_write_stops_at_the_next_step(tmp_path, caplog):
    seed_everything(0)
    task = ClassificationTask(MLP((1, 8, 8), 10), optimizer=functools.partial(torch.optim.Adam, lr=1e-3))
    with tmpfs(tmp_path / "checkpoints", size="400k") as folder:  # room for best.ckpt (~250 KB), not last.ckpt too
        trainer = Trainer(max_epochs=30, accelerator="cpu", num_sanity_val_steps=0,
                          callbacks=[ModelCheckpoint(dirpath=str(folder))])
        with caplog.at_level(logging.INFO), pytest.raises(CheckpointWriteError) as error:
            trainer.fit(task, DigitsDataModule(batch_size=64))
        message = str(error.value)
        assert message.startswith(f"checkpoint {folder / 'last.ckpt'}: not written (No space left on device")
        assert "\n" not in message
        # noticed by the training loop at a step boundary (not by fit's final wait), long before the end
        assert any(entry.name == "_train_epoch" for entry in error.traceback)
        assert STEPS_PER_EPOCH < trainer.global_step < 30 * STEPS_PER_EPOCH // 2
        saved = [r.getMessage() for r in caplog.records if "saved" in r.getMessage()]
        assert saved == [f"epoch 0, step {STEPS_PER_EPOCH}: val/acc={trainer.callback_metrics['val/acc']:.4f} "
                         f"is the best so far, saved {folder / 'best.ckpt'}"]
        assert load(folder / "best.ckpt")["loop"]["epoch"] == 0  # the earlier file is whole
        assert not (folder / "last.ckpt").exists() and not list(folder.glob(".*.tmp"))
