"""Every option of every config group composes and instantiates (discovered from conf/)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT

CONF = ROOT / "conf"
NOT_SELECTABLE = {"hydra", "local"}
#: What an option needs beside it to build (a language model's data, model and task go together).
COMPANIONS = {("data", "text"): ("task=language_model", "model=transformer"),
              ("data", "diabetes"): ("task=regression",),
              ("model", "transformer"): ("task=language_model", "data=text"),
              ("model", "gru"): ("task=language_model", "data=text"),
              ("task", "language_model"): ("data=text", "model=transformer")}


def options() -> list[tuple[str, str]]:
    found = []
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in NOT_SELECTABLE):
        for option in sorted(group.glob("*.yaml")):
            found.append((group.name, option.stem))
    return found


def compose_train(*overrides: str, tmp_path: Path):
    import train  # noqa: F401  (registers whatever train.py registers before composing)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def build_all(cfg):
    """Build every object train.py builds, without training."""
    from expkit.config.sizes import build_model
    from train import build

    datamodule = build(cfg.data)
    model, _ = build_model(cfg.model, datamodule)
    task = build(cfg.task, model=model, optimizer=build(cfg.optimizer), scheduler=build(cfg.scheduler))
    optimizer, scheduler, _ = task.configure_optimizers()
    callbacks = [build(node) for node in (cfg.callbacks or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=build(cfg.logger))
    return datamodule, task, optimizer, scheduler, trainer


def test_discovery_finds_the_documented_groups():
    groups = {g for g, _ in options()}
    assert {"data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths"} <= groups
    assert {o for g, o in options() if g == "model"} >= {"linear", "mlp", "cnn"}


@pytest.mark.parametrize("group,option", options())
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path):
    cfg = compose_train(f"{group}={option}", *COMPANIONS.get((group, option), ()), tmp_path=tmp_path)
    datamodule, task, optimizer, scheduler, trainer = build_all(cfg)
    assert trainer.max_epochs >= 1 and optimizer.param_groups[0]["lr"] > 0
    if group == "task":  # the checkpoint, early stopping and sweeps follow the task's metric
        callbacks = cfg.callbacks
        assert task.monitor == callbacks.model_checkpoint.monitor == callbacks.early_stopping.monitor \
            == cfg.optimized_metric
        assert task.mode == callbacks.model_checkpoint.mode == callbacks.early_stopping.mode == cfg.optimized_mode


@pytest.mark.parametrize("model", ["linear", "mlp", "cnn"])
@pytest.mark.parametrize("data", ["digits", "mnist", "synthetic"])
def test_every_model_fits_every_data_shape(model: str, data: str, tmp_path: Path):
    import torch

    cfg = compose_train(f"model={model}", f"data={data}", tmp_path=tmp_path)
    datamodule, task, _, _, _ = build_all(cfg)
    sizes = datamodule.sizes()
    logits = task.model(torch.zeros(2, *sizes["input_shape"]))
    assert logits.shape == (2, sizes["num_classes"])
