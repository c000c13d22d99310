"""Training recipe switches: label smoothing, per-step warmup then cosine, no weight decay on
norms and biases, an exponential moving average of the weights; ResNet-18 and timm models.
One run with all of them on (and crop-and-flip augmentation) resumes bit-exactly mid-epoch."""
from __future__ import annotations

import importlib.util
import math
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import read_scalars
from expkit.callbacks import EMA, ModelCheckpoint
from expkit.data import SyntheticDataModule
from expkit.data.augment import RandomCrop, RandomHorizontalFlip
from expkit.engine import Trainer, seed_everything
from expkit.engine.callback import Callback
from expkit.engine.checkpoint import load
from expkit.loggers import TensorBoardLogger
from expkit.models import ResNet18
from expkit.tasks import ClassificationTask
from expkit.tasks.param_groups import parameter_groups
from expkit.tasks.schedulers import WarmupCosineLR


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.2), nn.Linear(8 * 64, 4))


def recipe_task(**task_options: Any) -> ClassificationTask:
    return ClassificationTask(small_net(), optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True,
                                                              weight_decay=5e-4),
                              scheduler=partial(WarmupCosineLR, warmup_steps=3), **task_options)


class CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, task, result, batch, batch_idx) -> None:
        if trainer.optimizer_stepped and trainer.global_step == self.step:
            raise RuntimeError(f"crash at step {self.step}")


def fit(run_dir: Path, *, ckpt_path: Path | None = None, crash: int | None = None) -> Trainer:
    """Everything on: crop and flip, label smoothing, warmup-cosine per step, norm/bias groups, EMA."""
    seed_everything(0)
    data = SyntheticDataModule(input_shape=[3, 8, 8], num_classes=4, num_train=120, num_val=40, num_test=40,
                               batch_size=16, seed=3, augment=[RandomCrop(8, padding=2), RandomHorizontalFlip()])
    task = recipe_task(label_smoothing=0.1, norm_bias_weight_decay=0.0)
    callbacks = [ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=5), EMA(decay=0.9)]
    if crash is not None:
        callbacks.append(CrashAt(crash))
    logger = TensorBoardLogger(save_dir=str(run_dir))
    trainer = Trainer(max_epochs=3, accelerator="cpu", num_sanity_val_steps=1, log_every_n_steps=1,
                      callbacks=callbacks, logger=logger, default_root_dir=run_dir)
    try:
        trainer.fit(task, data, ckpt_path=ckpt_path)
    finally:
        logger.finalize()
    return trainer


def test_all_switches_with_augmentation_resume_bit_exactly_mid_epoch(tmp_path):
    straight = fit(tmp_path / "a")
    assert straight.global_step == 24 and straight.scheduler.total_steps == 24
    with pytest.raises(RuntimeError, match="crash at step 12"):
        fit(tmp_path / "b", crash=12)  # last.ckpt at step 10, two batches into epoch 1
    fit(tmp_path / "b", ckpt_path=tmp_path / "b/checkpoints/last.ckpt")
    a, b = load(tmp_path / "a/checkpoints/last.ckpt"), load(tmp_path / "b/checkpoints/last.ckpt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    ema_a, ema_b = a["callbacks"]["EMA"]["eval_model"], b["callbacks"]["EMA"]["eval_model"]
    assert ema_a.keys() == a["model"].keys() and all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert a["callbacks"]["EMA"]["updates"] == b["callbacks"]["EMA"]["updates"] == 24
    assert read_scalars(tmp_path / "a") == read_scalars(tmp_path / "b")


def test_ema_is_validated_saved_and_what_a_checkpoint_evaluates(tmp_path):
    trainer = fit(tmp_path)
    task, state = trainer.task, load(tmp_path / "checkpoints/last.ckpt")
    average = state["callbacks"]["EMA"]["eval_model"]
    assert any(not torch.equal(average[k], state["model"][k]) for k in average)  # an average, not the weights
    assert torch.equal(average["1.num_batches_tracked"], state["model"]["1.num_batches_tracked"])
    assert all(torch.equal(v, task.model.state_dict()[k]) for k, v in state["model"].items())  # swapped back
    data = SyntheticDataModule(input_shape=[3, 8, 8], num_classes=4, num_train=120, num_val=40, num_test=40,
                               batch_size=16, seed=3)
    averaged = recipe_task()
    averaged.model.load_state_dict(average)
    expected = Trainer(accelerator="cpu", logger=None).validate(averaged, data)
    assert trainer.callback_metrics["val/acc"] == expected["val/acc"]  # validation ran on the average
    assert trainer.callback_metrics["val/loss"] == pytest.approx(expected["val/loss"], rel=1e-6)
    fresh = recipe_task()
    tested = Trainer(accelerator="cpu").test(fresh, data, ckpt_path=tmp_path / "checkpoints/last.ckpt")
    assert all(torch.equal(v, average[k]) for k, v in fresh.model.state_dict().items())  # eval.py's path
    assert tested["test/acc"] == Trainer(accelerator="cpu").test(averaged, data)["test/acc"]


def test_ema_update_is_the_exponential_average():
    seed_everything(1)
    task = ClassificationTask(nn.Linear(3, 2), optimizer=partial(torch.optim.SGD, lr=0.5))
    data = SyntheticDataModule(input_shape=[3], num_classes=2, num_train=32, num_val=8, num_test=8, batch_size=8)
    history = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, task, result, batch, batch_idx):
            history.append(task.model.weight.detach().clone())

    ema = EMA(decay=0.8, warmup=True)
    expected = task.model.weight.detach().clone()  # the average starts at the initial weights
    trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[Record(), ema], logger=None, num_sanity_val_steps=0)
    trainer.fit(task, data)
    for n, w in enumerate(history):
        d = min(0.8, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * w
    assert len(history) == ema.updates == 4
    assert torch.allclose(ema.average["weight"], expected, atol=1e-6)


def test_label_smoothing_applies_to_the_training_loss_only():
    task = ClassificationTask(nn.Linear(5, 3), label_smoothing=0.2)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    logits = task.model(x)
    assert torch.allclose(task.training_step([x, y]).loss, F.cross_entropy(logits, y, label_smoothing=0.2))
    assert torch.allclose(task.validation_step([x, y]).loss, F.cross_entropy(logits, y))


def test_no_weight_decay_on_norms_and_biases():
    model = ResNet18([3, 32, 32], 10)
    groups = parameter_groups(model, 0.0)
    decayed, free = groups[0]["params"], groups[1]["params"]
    assert groups[1]["weight_decay"] == 0.0 and "weight_decay" not in groups[0]
    assert len(decayed) + len(free) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in decayed) and all(p.ndim == 1 for p in free)
    norms = sum(2 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(free) == norms + 1  # every BatchNorm's weight and bias, and the classifier's bias
    optimizer = recipe_task(norm_bias_weight_decay=0.0).configure_optimizers()[0]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [5e-4, 0.0]
    assert len(recipe_task().configure_optimizers()[0].param_groups) == 1  # null: one group, as before


def test_warmup_then_cosine_per_step():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = WarmupCosineLR(optimizer, warmup_steps=4, total_steps=12, warmup_start_factor=0.0, eta_min=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert lrs[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lrs[12:] == pytest.approx([0.1, 0.1])
    state = scheduler.state_dict()
    assert state["total_steps"] == 12 and state["last_epoch"] == 14  # plain numbers: checkpointable
    _, schedule, interval = recipe_task(scheduler_interval="epoch").configure_optimizers()
    assert interval == "step"  # counted in optimizer steps, so stepped per step
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    no_warmup = WarmupCosineLR(sgd, warmup_steps=0)  # total_steps=None at construction works
    no_warmup.total_steps = 4  # what the task fills in
    sgd.step()
    no_warmup.step()
    assert no_warmup.get_last_lr() == pytest.approx([0.5 * (1 + math.cos(math.pi / 4))])


def test_resnet18_cifar_stem_keeps_32x32_and_the_imagenet_stem_is_torchvisions():
    cifar = ResNet18([3, 32, 32], 10)
    assert cifar.net.conv1.kernel_size == (3, 3) and cifar.net.conv1.stride == (1, 1)
    assert isinstance(cifar.net.maxpool, nn.Identity)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    imagenet = ResNet18([1, 64, 64], 7, cifar_stem=False)
    assert imagenet.net.conv1.kernel_size == (7, 7) and imagenet.net.conv1.in_channels == 1
    assert imagenet(torch.randn(1, 1, 64, 64)).shape == (1, 7)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is an optional extra")
def test_model_timm_builds_any_timm_model_from_the_config():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from expkit.config.schema import register
    from conftest import ROOT

    register()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=timm", "model.model_name=resnet10t", "data=synthetic",
                                          "data.input_shape=[3,16,16]", "data.num_classes=5"])
    from expkit.config.sizes import build_model

    model, sizes = build_model(cfg.model, instantiate(cfg.data))  # the class count comes from the data
    assert sizes["num_outputs"] == 5 and model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
