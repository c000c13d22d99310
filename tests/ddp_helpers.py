"""Importable helpers for tests/test_ddp.py: DDP workers are spawned, so what they run
must live in a module (the test adds this folder to the workers' PYTHONPATH)."""
from __future__ import annotations

from expkit.engine import Callback
from expkit.engine import distributed as dist
from expkit.tasks import ClassificationTask


class FailOnRankTask(ClassificationTask):
    """A classification task whose ``fail_rank`` raises at its ``fail_at_step``-th training step,
    so a test can show that one failing rank ends the whole job (selected with ``task._target_``)."""

    def __init__(self, *args, fail_rank: int = 1, fail_at_step: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail_rank, self.fail_at_step = fail_rank, fail_at_step
        self._steps = 0

    def training_step(self, batch):
        self._steps += 1
        if dist.rank() == self.fail_rank and self._steps == self.fail_at_step:
            raise RuntimeError(f"injected failure on rank {self.fail_rank} at training step {self.fail_at_step}")
        return super().training_step(batch)


class HangOnRankTask(ClassificationTask):
    """On torchrun's first attempt, rank 1 writes its pid to the file named by
    ``EXPKIT_TEST_HANG_MARKER`` at its 30th training step and then waits there to be killed;
    after a restart (or without that variable) it trains like ``ClassificationTask``."""

    hang_rank, hang_at_step = 1, 30

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._steps = 0

    def training_step(self, batch):
        import os
        import time
        from pathlib import Path

        self._steps += 1
        marker = os.environ.get("EXPKIT_TEST_HANG_MARKER")
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        if marker and first_attempt and dist.rank() == self.hang_rank and self._steps == self.hang_at_step:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)
        return super().training_step(batch)


# ----------------------------------------------------------------- engine-level runs
# Plain SGD, no dropout, a training set that divides evenly: one process with batch B and
# two with B/2 each must take the same steps. The validation set (51 samples, batches of
# 10) divides neither by the world size nor by the batch, so the last shards are uneven.
NUM_TRAIN, NUM_VAL, EVAL_BATCH, LR = 96, 51, 10, 0.2


def _datamodule(batch_size: int, num_val: int = NUM_VAL):
    from expkit.data import SyntheticDataModule

    return SyntheticDataModule(input_shape=(1, 4, 4), num_classes=3, num_train=NUM_TRAIN, num_val=num_val,
                               num_test=8, batch_size=batch_size, eval_batch_size=EVAL_BATCH, seed=3)


def _task():
    from functools import partial

    import torch

    from expkit.engine import seed_everything
    from expkit.models import MLP

    seed_everything(0)
    model = MLP(input_shape=(1, 4, 4), num_outputs=3, hidden_sizes=(8,))
    return ClassificationTask(model, optimizer=partial(torch.optim.SGD, lr=LR))


def fit(batch_size: int, max_epochs: int, resume: str | None = None, stop_at_step: int | None = None,
        checkpoint_dir: str | None = None) -> dict:
    """Train the tiny model (DDP when started as one of several processes); the final weights.

    With ``stop_at_step``, training stops there and ``checkpoint_dir/last.ckpt`` is the
    mid-epoch checkpoint ModelCheckpoint wrote at that step."""
    import os

    from expkit.callbacks import ModelCheckpoint
    from expkit.engine import Trainer

    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    task, datamodule = _task(), _datamodule(batch_size)
    callbacks = []
    if stop_at_step is not None:
        callbacks = [ModelCheckpoint(dirpath=checkpoint_dir, monitor=None, save_last=False,
                                     every_n_train_steps=stop_at_step)]
    trainer = Trainer(max_epochs=max_epochs, max_steps=stop_at_step or -1, accelerator="cpu",
                      strategy="ddp" if ddp else "auto", num_sanity_val_steps=0, num_threads=1,
                      callbacks=callbacks, logger=None)
    trainer.fit(task, datamodule, ckpt_path=resume)
    return {k: v.detach().clone() for k, v in task.model.state_dict().items()}


def validate(weights: dict, num_val: int = NUM_VAL) -> dict[str, float]:
    """Validation metrics of ``weights`` (reduced over ranks under DDP), with the TensorBoard
    pictures on: their confusion matrix is reduced over ranks too, also from an empty shard."""
    import os
    import tempfile

    from expkit.callbacks import TensorBoardImages
    from expkit.engine import Trainer
    from expkit.loggers import TensorBoardLogger

    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    task = _task()
    task.model.load_state_dict(weights)
    with tempfile.TemporaryDirectory() as out:
        logger = TensorBoardLogger(save_dir=out)
        trainer = Trainer(accelerator="cpu", strategy="ddp" if ddp else "auto", num_threads=1,
                          callbacks=[TensorBoardImages(num_classes=3, log_graph=False)], logger=logger)
        metrics = trainer.validate(task, _datamodule(16, num_val))
        logger.finalize()
    return metrics


def ddp_worker(global_batch: int, mid_step: int, single_mid_ckpt: str, ddp_ckpt_dir: str) -> dict:
    """What tests/test_ddp.py runs on each of two processes, all in one launch to save start-up time."""
    import torch.distributed as tdist

    weights = fit(global_batch, max_epochs=2)
    fit(global_batch, max_epochs=2, stop_at_step=mid_step, checkpoint_dir=ddp_ckpt_dir)  # mid-epoch
    resumed = fit(global_batch, max_epochs=2, resume=single_mid_ckpt)
    result = {"weights": weights, "val": validate(weights), "resumed_from_single": resumed,
              "val_one_sample": validate(weights, num_val=1)}  # rank 1's shard is empty
    tdist.destroy_process_group()
    return result


# ------------------------------------------------------- the same run on any world size
class EpochMetrics(Callback):
    """Records the metrics each epoch ends with (train means and validation)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer, task) -> None:
        self.epochs.append({k: v for k, v in trainer.callback_metrics.items() if not k.endswith("_step")})


def adam_run(batch_size: int, accumulate: int = 1, num_train: int = 90, max_epochs: int = 2) -> dict:
    """Adam, a training set whose last global batch is uneven (90 = 2 x 32 + 26), and optionally
    accumulation: per-epoch metrics and final weights, on however many ranks this runs on."""
    import os
    from functools import partial

    import torch

    from expkit.data import SyntheticDataModule
    from expkit.engine import Trainer, seed_everything
    from expkit.models import MLP

    seed_everything(0)
    model = MLP(input_shape=(1, 4, 4), num_outputs=3, hidden_sizes=(8,))
    task = ClassificationTask(model, optimizer=partial(torch.optim.Adam, lr=0.05))
    datamodule = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=3, num_train=num_train, num_val=NUM_VAL,
                                     num_test=8, batch_size=batch_size, eval_batch_size=12, seed=3)
    recorder = EpochMetrics()
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    trainer = Trainer(max_epochs=max_epochs, accelerator="cpu", strategy="ddp" if ddp else "auto",
                      num_sanity_val_steps=0, num_threads=1, accumulate_grad_batches=accumulate,
                      callbacks=[recorder], logger=None)
    trainer.fit(task, datamodule)
    return {"epochs": recorder.epochs, "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def world_size_worker(runs: list[tuple[int, int]]) -> list[dict]:
    """``adam_run(batch, accumulate)`` for each pair, on every rank of one launch."""
    import torch.distributed as tdist

    results = [adam_run(batch, accumulate) for batch, accumulate in runs]
    tdist.destroy_process_group()
    return results
