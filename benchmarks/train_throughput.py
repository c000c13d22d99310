"""Training throughput: the engine with its default callbacks vs hand-written loops
(and Lightning's Trainer when it is installed), side by side in one process.

    python benchmarks/train_throughput.py            # about 12 minutes on 2 cores
    python benchmarks/train_throughput.py --reps 3 --workloads digits-mlp --threads 2

Runners, all with the same model (same seed, so the same initial weights), the same
in-memory tensors, the same batch order and the same number of epochs:

- engine: ``Trainer`` as ``python train.py`` builds it: the callbacks of
  conf/callbacks/default.yaml and the logger of conf/logger/tensorboard.yaml, composed by
  Hydra and built by train.py's own ``build`` (so the benchmark follows the defaults),
  sanity validation and step logs every 50 steps.
- engine, no pictures: the same with the confusion matrix, prediction grid and graph off;
  engine, until pictures written: the default, timed until its picture worker has written
  everything (the worker draws beside training; "engine" alone times training, and both
  wait for the worker before the next runner starts). Column "pictures' cost".
- engine, loop only: ``Trainer`` with no callbacks and no logger, validating once at the
  end: the engine's own cost over the bare loop (it still keeps exact training metrics).
- hand-written: the same outputs by hand: train while summing loss and correct
  predictions on the device, validate, write the epoch scalars to TensorBoard, save
  ``last`` (and ``best`` when val accuracy improves) every epoch.
- hand-written, bare: forward, loss, backward, step, zero_grad and nothing else.
- lightning: ``lightning.Trainer`` with the equivalent callbacks and logger, fed the
  same in-memory batches.

Each runner times its training only (``fit`` and closing its logger), not the building of
its model, callbacks and logger: ``python train.py`` builds those once per process, and
``benchmarks/startup.py`` and ``benchmarks/whole_run.py`` measure that part.

Runners are interleaved and rotated (no runner always goes first) after one warm-up
each, so drifting machine load hits all alike; ratios are per repetition, then the
median (min-max). Wall-clock ratios are the result; CPU-time ratios are printed too
because they move less on a shared machine. The engine's final training loss must
equal both hand-written loops' to 1e-5 (exit status 1 otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from expkit.data import DigitsDataModule, SyntheticDataModule
from expkit.data.base import DataModule
from expkit.engine import Trainer
from expkit.data.loaders import TensorLoader, epoch_permutation
from expkit.models import CNN, MLP
from expkit.tasks import ClassificationTask

LR = 3e-3
SEED = 0


@dataclass
class Workload:
    name: str
    make_data: Callable[[], DataModule]
    make_model: Callable[[DataModule], nn.Module]
    epochs: int


def workloads(scale: float) -> dict[str, Workload]:
    def epochs(n: int) -> int:
        return max(1, round(n * scale))

    return {
        "digits-mlp": Workload("MLP, digits 1,257 x 64, batch 64",
                               lambda: DigitsDataModule(batch_size=64, seed=SEED),
                               lambda dm: MLP(dm.input_shape, dm.num_classes), epochs(20)),
        "synthetic784-mlp": Workload("MLP, synthetic 60,000 x 784, batch 128",
                                     lambda: SyntheticDataModule(input_shape=(784,), num_train=60_000, num_val=2_048,
                                                                 num_test=256, batch_size=128, seed=SEED),
                                     lambda dm: MLP(dm.input_shape, dm.num_classes), epochs(2)),
        "digits-cnn": Workload("CNN, digits 1,257 x 1x8x8, batch 128",
                               lambda: DigitsDataModule(batch_size=128, seed=SEED),
                               lambda dm: CNN(dm.input_shape, dm.num_classes), epochs(20)),
    }


# ---------------------------------------------------------------- measuring
def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets this process's peak RSS (VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    steps: int
    model: nn.Module
    peak_rss_mb: float


class Stopwatch:
    """Wall and CPU seconds of the ``with`` block in which a runner trains."""

    wall = cpu = 0.0

    def __enter__(self) -> "Stopwatch":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def timed(fn: Callable[[Stopwatch], tuple[int, nn.Module]]) -> Run:
    reset_peak_rss()
    watch = Stopwatch()
    steps, model = fn(watch)
    return Run(watch.wall, watch.cpu, steps, model, peak_rss_mb())


# ------------------------------------------------------------------ runners
ROOT = Path(__file__).resolve().parents[1]
_DEFAULTS: Any = None


def default_callbacks_and_logger(out: str, epochs: int, num_classes: int, pictures: bool = True) -> tuple[list, Any]:
    """Fresh objects from conf/callbacks/default.yaml and conf/logger/tensorboard.yaml
    (composed once; building them per run is cheap). Early stopping gets a patience the
    run cannot reach, so every runner trains the same number of epochs."""
    global _DEFAULTS
    sys.path.insert(0, str(ROOT))
    from train import build  # also registers the config schemas

    if _DEFAULTS is None:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            _DEFAULTS = compose("train", overrides=["paths.output_dir=/unused"])
    overrides = {"model_checkpoint": {"dirpath": f"{out}/checkpoints"}, "early_stopping": {"patience": epochs + 1},
                 "tensorboard_images": {"num_classes": num_classes}}
    if not pictures:
        overrides["tensorboard_images"].update(log_confusion_matrix=False, log_predictions=False, log_graph=False)
    callbacks = [build(node, **overrides.get(name, {})) for name, node in _DEFAULTS.callbacks.items() if node]
    return callbacks, build(_DEFAULTS.logger, save_dir=f"{out}/tensorboard")


def engine_task(dm: DataModule, wl: Workload) -> ClassificationTask:
    """The workload's model (seeded: every runner starts from the same weights) with Adam."""
    torch.manual_seed(SEED)
    return ClassificationTask(wl.make_model(dm), optimizer=partial(torch.optim.Adam, lr=LR))


def run_engine(dm: DataModule, wl: Workload, threads: int, watch: Stopwatch, max_steps: int = -1,
               pictures: bool = True, until_pictures_written: bool = False) -> tuple[int, nn.Module]:
    """``python train.py``'s objects with conf/callbacks/default.yaml and conf/logger/tensorboard.yaml
    (``pictures=False``: the same with the confusion matrix, prediction grid and graph switched off).

    The picture worker draws in the background and may still be busy when fit returns. It is
    waited for either way, so it never runs into the next runner's time: outside the timed
    part (what training costs), or inside it (``until_pictures_written``: until the run's
    pictures are on disk, what ``python train.py`` waits for at exit)."""
    from expkit.loggers.plots import wait_for_pictures

    task = engine_task(dm, wl)
    with tempfile.TemporaryDirectory() as out:
        callbacks, logger = default_callbacks_and_logger(out, wl.epochs, dm.num_classes, pictures)
        trainer = Trainer(max_epochs=wl.epochs, max_steps=max_steps, num_threads=threads, num_sanity_val_steps=2,
                          log_every_n_steps=50, callbacks=callbacks, logger=logger, default_root_dir=out)
        with watch:
            trainer.fit(task, dm)
            logger.finalize()
            if until_pictures_written:
                wait_for_pictures()
        wait_for_pictures()
    return trainer.global_step, task.model


def run_engine_loop(dm: DataModule, wl: Workload, threads: int, watch: Stopwatch,
                    max_steps: int = -1) -> tuple[int, nn.Module]:
    """The engine's loop alone: no callbacks, no logger, no sanity check, and validation only
    once, at the end of fit. It still keeps exact per-step training metrics on the device."""
    task = engine_task(dm, wl)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(max_epochs=wl.epochs, max_steps=max_steps, num_threads=threads, num_sanity_val_steps=0,
                          check_val_every_n_epoch=wl.epochs + 1, callbacks=[], logger=None, default_root_dir=out)
        with watch:
            trainer.fit(task, dm)
    return trainer.global_step, task.model


def run_hand(dm: DataModule, wl: Workload, threads: int, watch: Stopwatch, max_steps: int = -1) -> tuple[int, nn.Module]:
    """The same outputs written by hand: each epoch trains while summing the loss and the
    correct predictions on the device, validates, writes the four epoch scalars to
    TensorBoard and saves ``last.pt`` (and ``best.pt`` when val accuracy improves)."""
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = wl.make_model(dm)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = dm.splits["train"]
    vx, vy = dm.splits["val"]
    bs, eval_bs = dm.batch_size, dm.eval_batch_size
    best, steps = -1.0, 0
    with tempfile.TemporaryDirectory() as out, watch:
        writer = SummaryWriter(f"{out}/tensorboard")
        for epoch in range(wl.epochs):
            model.train()
            order = epoch_permutation(len(y), SEED, epoch, shuffle=True)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.long)
            for start in range(0, len(y), bs):
                idx = order[start:start + bs]
                xb, yb = x[idx], y[idx]
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                loss_sum += loss.detach() * len(yb)
                correct += (logits.argmax(1) == yb).sum()
                steps += 1
                if steps == max_steps:
                    break
            model.eval()
            val_loss, val_correct = 0.0, 0
            with torch.no_grad():
                for start in range(0, len(vy), eval_bs):
                    logits = model(vx[start:start + eval_bs])
                    val_loss += F.cross_entropy(logits, vy[start:start + eval_bs], reduction="sum").item()
                    val_correct += (logits.argmax(1) == vy[start:start + eval_bs]).sum().item()
            acc = val_correct / len(vy)
            seen = min(len(y), steps * bs) if epoch == 0 else len(y)
            for tag, value in (("train/loss", loss_sum.item() / seen), ("train/acc", correct.item() / seen),
                               ("val/loss", val_loss / len(vy)), ("val/acc", acc)):
                writer.add_scalar(tag, value, steps)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
            if acc > best:
                best = acc
                torch.save(state, f"{out}/best.pt")
            torch.save(state, f"{out}/last.pt")
            if steps == max_steps:
                break
        writer.close()
    return steps, model


def run_bare(dm: DataModule, wl: Workload, threads: int, watch: Stopwatch, max_steps: int = -1) -> tuple[int, nn.Module]:
    """The minimum: forward, loss, backward, step, zero_grad; no metrics, validation or saving."""
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = wl.make_model(dm)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = dm.splits["train"]
    model.train()
    with watch:
        steps = _bare_epochs(model, optimizer, x, y, dm.batch_size, wl.epochs, max_steps)
    return steps, model


def _bare_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, epochs: int, max_steps: int) -> int:
    steps = 0
    for epoch in range(epochs):
        order = epoch_permutation(len(y), SEED, epoch, shuffle=True)
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps += 1
            if steps == max_steps:
                return steps
    return steps


class _Batches:
    """The engine's in-memory batches as a plain iterable, one new epoch per ``iter``."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool) -> None:
        self.loader = TensorLoader(tensors, batch_size, shuffle=shuffle, seed=SEED)
        self.epoch = -1

    def __iter__(self):
        self.epoch += 1
        self.loader.set_epoch(self.epoch)
        self.loader.restart()
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def lightning_runner() -> Callable[..., tuple[int, nn.Module]] | None:
    try:
        import lightning as L
    except ImportError:
        return None
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class LitClassifier(L.LightningModule):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def _step(self, batch, stage: str):
            x, y = batch
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True)
            self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
            return loss

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train")

        def validation_step(self, batch, batch_idx):
            self._step(batch, "val")

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    def run(dm: DataModule, wl: Workload, threads: int, watch: Stopwatch, max_steps: int = -1) -> tuple[int, nn.Module]:
        from lightning.pytorch.callbacks import EarlyStopping as LEarly
        from lightning.pytorch.callbacks import LearningRateMonitor as LLr
        from lightning.pytorch.callbacks import ModelCheckpoint as LCkpt
        from lightning.pytorch.loggers import TensorBoardLogger as LTb

        torch.set_num_threads(threads)
        torch.manual_seed(SEED)
        module = LitClassifier(wl.make_model(dm))
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            trainer = L.Trainer(
                max_epochs=wl.epochs, max_steps=max_steps, accelerator="cpu", devices=1, num_sanity_val_steps=2,
                log_every_n_steps=50, enable_model_summary=False, default_root_dir=out,
                logger=LTb(save_dir=out, name="tensorboard"),
                callbacks=[LCkpt(dirpath=f"{out}/checkpoints", monitor="val/acc", mode="max", save_last=True),
                           LEarly(monitor="val/acc", mode="max", patience=wl.epochs + 1,
                                  check_on_train_epoch_end=False),
                           LLr(logging_interval="epoch")])
            train, val = _Batches(dm.splits["train"], dm.batch_size, True), _Batches(dm.splits["val"],
                                                                                     dm.eval_batch_size, False)
            with watch:
                trainer.fit(module, train, val)
        return trainer.global_step, module.model

    return run


# ------------------------------------------------- launch-bound: Linear(4, 2)
TINY = dict(samples=4096, batch_size=8, epochs=3)


def _tiny_data() -> SyntheticDataModule:
    return SyntheticDataModule(input_shape=(4,), num_classes=2, num_train=TINY["samples"], num_val=256,
                               num_test=8, batch_size=TINY["batch_size"], eval_batch_size=256, seed=SEED)


def _tiny_model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Linear(4, 2)


def tiny_engine(dm: DataModule, watch: Stopwatch) -> nn.Module:
    """The engine's loop with nothing around it: no callbacks, no logger, no sanity check,
    one validation at the end. Its exact per-step loss and accuracy sums are kept."""
    task = ClassificationTask(_tiny_model(), optimizer=partial(torch.optim.SGD, lr=0.1))
    trainer = Trainer(max_epochs=TINY["epochs"], accelerator="cpu", num_threads=1, num_sanity_val_steps=0,
                      check_val_every_n_epoch=TINY["epochs"], callbacks=[], logger=None)
    with watch:
        trainer.fit(task, dm)
    return task.model


def _summed_step(model: nn.Module, optimizer: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
                 loss_sum: torch.Tensor, correct: torch.Tensor) -> None:
    """One hand-written step that also sums the loss and the correct predictions on the device."""
    logits = model(xb)
    loss = F.cross_entropy(logits, yb)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss_sum += loss.detach() * len(yb)
    correct += (logits.argmax(1) == yb).sum()


def tiny_hand(dm: DataModule, watch: Stopwatch) -> nn.Module:
    """By hand, the same work: each step sums the loss and the correct predictions on the
    device (what the engine keeps for its exact epoch means), one validation at the end."""
    model = _tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = dm.splits["train"]
    vx, vy = dm.splits["val"]
    with watch:
        for epoch in range(TINY["epochs"]):
            model.train()
            order = epoch_permutation(len(y), SEED, epoch, shuffle=True)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.float64)
            for start in range(0, len(y), TINY["batch_size"]):
                idx = order[start:start + TINY["batch_size"]]
                xb, yb = x[idx], y[idx]
                _summed_step(model, optimizer, xb, yb, loss_sum, correct)
            float(loss_sum), float(correct)  # the epoch means are read once
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(vx), vy).item()
    return model


def tiny_lightning() -> Callable[[DataModule, Stopwatch], nn.Module] | None:
    try:
        import lightning as L
    except ImportError:
        return None

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _tiny_model()

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val/loss", F.cross_entropy(self.model(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def run(dm: DataModule, watch: Stopwatch) -> nn.Module:
        module = Tiny()
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            trainer = L.Trainer(max_epochs=TINY["epochs"], accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, check_val_every_n_epoch=TINY["epochs"], default_root_dir=out)
            train, val = _Batches(dm.splits["train"], TINY["batch_size"], True), _Batches(dm.splits["val"], 256, False)
            with watch:
                trainer.fit(module, train, val)
        return module.model

    return run


def interleaved(runners: dict[str, Callable[[Stopwatch], nn.Module]],
                reps: int) -> tuple[dict[str, list[float]], dict[str, nn.Module]]:
    """Each runner's wall seconds over ``reps`` rounds after a warm-up round, rotated so that no
    runner always goes first; and the model each trained last."""
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    models: dict[str, nn.Module] = {}
    for rep in range(reps + 1):  # the first round warms up
        names = list(runners)[rep % len(runners):] + list(runners)[:rep % len(runners)]
        for name in names:
            watch = Stopwatch()
            models[name] = runners[name](watch)
            if rep:
                seconds[name].append(watch.wall)
    return seconds, models


def launch_bound(reps: int, use_lightning: bool) -> None:
    """Per-step overhead where the math costs nothing: Linear(4, 2), batch 8, one thread."""
    torch.set_num_threads(1)
    dm = _tiny_data()
    dm.setup()
    runners: dict[str, Callable] = {"engine, loop only": tiny_engine, "hand-written, same sums": tiny_hand}
    lightning = tiny_lightning() if use_lightning else None
    if lightning is not None:
        runners["lightning"] = lightning
    seconds, models = interleaved({name: partial(run, dm) for name, run in runners.items()}, reps)
    steps = TINY["epochs"] * -(-TINY["samples"] // TINY["batch_size"])
    same = torch.equal(models["engine, loop only"].weight, models["hand-written, same sums"].weight)
    print(f"\n## launch-bound: Linear(4, 2), {TINY['samples']} samples, batch {TINY['batch_size']}, "
          f"{TINY['epochs']} epochs ({steps} steps), one thread; engine and hand-written weights "
          f"{'identical' if same else 'DIFFER'}")
    rows = [{"runner": name, "us/step": f"{statistics.median(s) / steps * 1e6:,.1f}",
             "engine / this, wall": spread([e / r for e, r in zip(seconds["engine, loop only"], s)])}
            for name, s in seconds.items()]
    print_table(rows)
    if not same:
        raise SystemExit("launch-bound: the engine's weights differ from the hand-written loop's")


# ------------------------------------- CIFAR-shaped: crop and flip on the fly
AUG = dict(samples=5120, batch_size=256, epochs=2)


def _aug_data(loader: str = "memory", workers: int = 0, torchvision_transforms: bool = False) -> SyntheticDataModule:
    """Random 3x32x32 tensors; crop (pad 4) and flip as ``data.augment`` sets them."""
    if torchvision_transforms:
        from torchvision.transforms import v2

        augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    else:
        from expkit.data.augment import RandomCrop, RandomHorizontalFlip

        augment = [RandomCrop(32, padding=4), RandomHorizontalFlip()]
    return SyntheticDataModule(input_shape=(3, 32, 32), num_classes=10, num_train=AUG["samples"], num_val=256,
                               num_test=8, batch_size=AUG["batch_size"], eval_batch_size=256, seed=SEED,
                               augment=augment, loader=loader, num_workers=workers)


def _aug_model() -> nn.Module:
    torch.manual_seed(SEED)
    return CNN((3, 32, 32), 10)


def aug_engine(dm: DataModule, watch: Stopwatch, threads: int) -> nn.Module:
    """The engine's loop (no callbacks, no logger, one validation at the end) on ``dm``'s path."""
    task = ClassificationTask(_aug_model(), optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    trainer = Trainer(max_epochs=AUG["epochs"], accelerator="cpu", num_threads=threads, num_sanity_val_steps=0,
                      check_val_every_n_epoch=AUG["epochs"], callbacks=[], logger=None)
    with watch:
        trainer.fit(task, dm)
    return task.model


def aug_hand(dm: DataModule, watch: Stopwatch, threads: int) -> nn.Module:
    """By hand: the same batches and the same batched crop and flip (same generator seeds, so the
    same pixels), summing loss and correct predictions on the device, one validation at the end."""
    from expkit.data.augment import apply_batch, batch_seed

    torch.set_num_threads(threads)
    model = _aug_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = dm.splits["train"]
    vx, vy = dm.splits["val"]
    generator, bs = torch.Generator(), AUG["batch_size"]
    with watch:
        for epoch in range(AUG["epochs"]):
            model.train()
            order = epoch_permutation(len(y), SEED, epoch, shuffle=True)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.float64)
            for position, start in enumerate(range(0, len(y), bs)):
                idx = order[start:start + bs]
                generator.manual_seed(batch_seed(SEED, epoch, position, 0))
                xb, yb = apply_batch(dm.augment, x.index_select(0, idx), generator), y.index_select(0, idx)
                _summed_step(model, optimizer, xb, yb, loss_sum, correct)
            float(loss_sum), float(correct)
        model.eval()
        with torch.no_grad():
            F.cross_entropy(model(vx), vy).item()
    return model


def augment_path(reps: int, threads: int) -> None:
    """Crop and flip on the memory path (batched, on the device) against a hand-written loop doing
    the same, and against the DataLoader path with torchvision's per-sample transforms in 2 workers."""
    memory, workers = _aug_data(), _aug_data("dataloader", workers=2, torchvision_transforms=True)
    for dm in (memory, workers):
        dm.setup()
    runners: dict[str, Callable] = {
        "engine, memory path, batched crop+flip": partial(aug_engine, memory),
        "hand-written, same batched crop+flip": partial(aug_hand, memory),
        "engine, DataLoader path, torchvision per sample, 2 workers": partial(aug_engine, workers)}
    seconds, models = interleaved({name: partial(run, threads=threads) for name, run in runners.items()}, reps)
    engine = seconds["engine, memory path, batched crop+flip"]
    first, hand = models["engine, memory path, batched crop+flip"], models["hand-written, same batched crop+flip"]
    same = all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), hand.state_dict().values()))
    print(f"\n## cifar-augment: CNN, {AUG['samples']:,} random 3x32x32, batch {AUG['batch_size']}, "
          f"{AUG['epochs']} epochs, crop (pad 4) + flip; engine and hand-written weights "
          f"{'identical' if same else 'DIFFER'}")
    rows = [{"runner": name, "samples/s": f"{AUG['epochs'] * AUG['samples'] / statistics.median(s):,.0f}",
             "engine memory / this, samples/s": spread([r / e for e, r in zip(engine, s)])}
            for name, s in seconds.items()]
    print_table(rows)
    if not same:
        raise SystemExit("cifar-augment: the engine's weights differ from the hand-written loop's")


# ------------------------------------------------------------------- checks
@torch.no_grad()
def train_loss(model: nn.Module, dm: DataModule) -> float:
    model.eval()
    x, y = dm.splits["train"]
    return F.cross_entropy(model(x), y).item()


def data_path_speed(batch_size: int = 128, reps: int = 5, epochs: int = 2) -> dict[str, Any]:
    """Samples/s of shuffled passes over 60,000 x 784 tensors: in-memory slicing vs DataLoader.

    Each repetition runs one path for a warm-up epoch and then ``epochs`` timed epochs (its
    steady state, as in training, where one loader runs epoch after epoch), then the other
    path the same way; ``reps`` repetitions, alternating which goes first. Medians and the
    per-repetition ratios."""
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.randn(60_000, 784)
    y = torch.randint(0, 10, (60_000,))
    memory = TensorLoader((x, y), batch_size, shuffle=True, seed=SEED)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)

    def memory_epoch(epoch: int) -> Any:
        memory.set_epoch(epoch)
        memory.restart()
        return iter(memory)

    passes = {"memory": memory_epoch, "dataloader": lambda epoch: iter(loader)}
    speeds: dict[str, list[float]] = {name: [] for name in passes}
    for rep in range(reps):
        for name in (list(passes) if rep % 2 == 0 else list(passes)[::-1]):
            for epoch in range(epochs + 1):
                if epoch == 1:  # epoch 0 warms up
                    start, n = time.perf_counter(), 0
                for _, yb in passes[name](rep * (epochs + 1) + epoch):
                    if epoch:
                        n += len(yb)
            speeds[name].append(n / (time.perf_counter() - start))
    ratios = [m / d for m, d in zip(speeds["memory"], speeds["dataloader"])]
    return {"memory": statistics.median(speeds["memory"]), "dataloader": statistics.median(speeds["dataloader"]),
            "ratio": spread(ratios)}


# ------------------------------------------------------------------- report
def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per runner (after one warm-up)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's epochs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads (trainer.num_threads; default: torch's, as train.py uses)")
    parser.add_argument("--workloads", default="linear-tiny,digits-mlp,synthetic784-mlp,digits-cnn,cifar-augment",
                        help="linear-tiny is the launch-bound Linear(4, 2) workload (always one thread); "
                             "cifar-augment compares augmentation on the two data paths")
    parser.add_argument("--no-lightning", action="store_true", help="skip Lightning even when installed")
    parser.add_argument("--no-data-path", action="store_true", help="skip the in-memory vs DataLoader check")
    args = parser.parse_args()

    logging.disable(logging.WARNING)  # the engine's progress lines would go to stderr
    torch.set_num_threads(args.threads)
    runners: dict[str, Callable] = {"engine": run_engine, "engine, no pictures": partial(run_engine, pictures=False),
                                    "engine, until pictures written": partial(run_engine, until_pictures_written=True),
                                    "engine, loop only": run_engine_loop, "hand-written": run_hand,
                                    "hand-written, bare": run_bare}
    lightning = None if args.no_lightning else lightning_runner()
    if lightning is not None:
        runners["lightning"] = lightning
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, threads={args.threads}, reps={args.reps}, load average {load:.2f} at start"
          + ("" if lightning else ", Lightning not installed"))
    all_wl = workloads(args.scale)
    failures = []
    keys = args.workloads.split(",")
    if "linear-tiny" in keys:
        launch_bound(max(args.reps, 5), not args.no_lightning)
        torch.set_num_threads(args.threads)
    if "cifar-augment" in keys:
        augment_path(args.reps, args.threads)
    for key in [k for k in keys if k not in ("linear-tiny", "cifar-augment")]:
        wl = all_wl[key]
        dm = wl.make_data()
        dm.setup()
        n_train = dm.num_samples("train")
        names = list(runners)
        for name in names:  # warm-up: allocator, lazy imports, first-call paths
            timed(partial(runners[name], dm, wl, args.threads))
        times: dict[str, list[Run]] = {name: [] for name in names}
        one_step: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]  # rotate: no runner always goes first
            for name in order:
                times[name].append(timed(partial(runners[name], dm, wl, args.threads)))
            for name in order:  # a fit of one step: what a fit costs besides its steps
                one_step[name].append(timed(partial(runners[name], dm, wl, args.threads, max_steps=1)).seconds)
        engine_loss = train_loss(times["engine"][-1].model, dm)
        checks = []
        for name in ("engine, no pictures", "engine, loop only", "hand-written", "hand-written, bare"):
            other = train_loss(times[name][-1].model, dm)
            checks.append(f"{name} {other:.6f}")
            if abs(engine_loss - other) > 1e-5:
                failures.append(f"{key}: engine final loss {engine_loss:.7f} != {name} {other:.7f}")
        steps = times["engine"][-1].steps
        rows = []
        for name in names:
            runs = times[name]
            secs = [r.seconds for r in runs]
            per_step = statistics.median(secs) / runs[-1].steps
            rows.append({
                "runner": name,
                "samples/s": f"{wl.epochs * n_train / statistics.median(secs):,.0f}",
                "us/step": f"{per_step * 1e6:,.0f}",
                "engine / this, wall": "" if name == "engine" else spread(
                    [e.seconds / r.seconds for e, r in zip(times["engine"], runs)]),
                "engine / this, CPU": "" if name == "engine" else spread(
                    [e.cpu_seconds / r.cpu_seconds for e, r in zip(times["engine"], runs)]),
                "engine, no pictures / this, wall": "" if name.startswith("engine") else spread(
                    [e.seconds / r.seconds for e, r in zip(times["engine, no pictures"], runs)]),
                "pictures' cost: this / no pictures, wall": spread(
                    [r.seconds / e.seconds for r, e in zip(runs, times["engine, no pictures"])])
                if name in ("engine", "engine, until pictures written") else "",
                "this / bare, wall": spread([r.seconds / b.seconds for r, b in zip(runs, times["hand-written, bare"])]),
                "fixed s/fit": f"{statistics.median(one_step[name]) - per_step:.3f}",
                "peak RSS MB": f"{max(r.peak_rss_mb for r in runs):.0f}",
            })
        print(f"\n## {key}: {wl.name}; {wl.epochs} epochs, {steps} steps per fit; final train loss: "
              f"engine {engine_loss:.6f}, {', '.join(checks)}", flush=True)
        print_table(rows)
    if not args.no_data_path:
        speed = data_path_speed()
        print(f"\n## data path, 60,000 x 784 float32, batch 128, shuffled: in-memory {speed['memory']:,.0f} "
              f"samples/s, DataLoader(TensorDataset) {speed['dataloader']:,.0f} samples/s, "
              f"ratio {speed['ratio']} (median (min-max) over repetitions)")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
