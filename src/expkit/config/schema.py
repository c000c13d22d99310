"""Hydra's compose-time schemas, made from the components' own option definitions.

Each YAML option pulls its schema in first, by an absolute path and ``@_here_``:

    defaults:
      - /schema_trainer@_here_
      - _self_

A key the schema lacks (``trainer.max_epoch=5``) or a value of the wrong type
(``optimizer.lr=abc``) then fails before any object is built or torch is imported,
with Hydra's message naming the key. Schemas are stored as root configs (no group),
so ``--help`` never lists them as options. Each schema is the component's ``Options``
dataclass (``expkit.options``) plus ``_target_``: nothing here repeats a default.

Imports only Hydra, the standard library and torch-free option modules.
"""
from __future__ import annotations

import dataclasses
import typing

from hydra.core.config_store import ConfigStore

from expkit.callbacks.options import (EarlyStoppingOptions, EMAOptions, LearningRateMonitorOptions,
                                      ModelCheckpointOptions, ProfilerOptions, ProgressBarOptions,
                                      TensorBoardImagesOptions)
from expkit.config.torch_options import AdamOptions, CosineOptions, SGDOptions, StepLROptions, WarmupCosineOptions
from expkit.data.options import (CIFAR10Options, CIFAR100Options, DiabetesOptions, DigitsOptions, ImageFolderOptions,
                                 MNISTOptions, SyntheticOptions, TextOptions)
from expkit.engine.options import TrainerOptions
from expkit.loggers.options import TensorBoardLoggerOptions
from expkit.tasks.options import ClassificationOptions, LanguageModelOptions, RegressionOptions

#: Config name -> (the ``_target_`` it builds, its options, whether it is a ``_partial_``).
COMPONENTS: dict[str, tuple[str, type, bool]] = {
    "schema_trainer": ("expkit.engine.Trainer", TrainerOptions, False),
    "schema_task": ("expkit.tasks.ClassificationTask", ClassificationOptions, False),
    "schema_task_regression": ("expkit.tasks.RegressionTask", RegressionOptions, False),
    "schema_task_language_model": ("expkit.tasks.LanguageModelTask", LanguageModelOptions, False),
    "schema_data_digits": ("expkit.data.DigitsDataModule", DigitsOptions, False),
    "schema_data_mnist": ("expkit.data.MNISTDataModule", MNISTOptions, False),
    "schema_data_synthetic": ("expkit.data.SyntheticDataModule", SyntheticOptions, False),
    "schema_data_diabetes": ("expkit.data.DiabetesDataModule", DiabetesOptions, False),
    "schema_data_text": ("expkit.data.TextDataModule", TextOptions, False),
    "schema_data_cifar10": ("expkit.data.CIFAR10DataModule", CIFAR10Options, False),
    "schema_data_cifar100": ("expkit.data.CIFAR100DataModule", CIFAR100Options, False),
    "schema_data_image_folder": ("expkit.data.ImageFolderDataModule", ImageFolderOptions, False),
    "schema_optimizer_adam": ("torch.optim.Adam", AdamOptions, True),
    "schema_optimizer_sgd": ("torch.optim.SGD", SGDOptions, True),
    "schema_scheduler_cosine": ("torch.optim.lr_scheduler.CosineAnnealingLR", CosineOptions, True),
    "schema_scheduler_step": ("torch.optim.lr_scheduler.StepLR", StepLROptions, True),
    "schema_scheduler_warmup_cosine": ("expkit.tasks.schedulers.WarmupCosineLR", WarmupCosineOptions, True),
    "schema_callback_model_checkpoint": ("expkit.callbacks.ModelCheckpoint", ModelCheckpointOptions, False),
    "schema_callback_early_stopping": ("expkit.callbacks.EarlyStopping", EarlyStoppingOptions, False),
    "schema_callback_lr_monitor": ("expkit.callbacks.LearningRateMonitor", LearningRateMonitorOptions, False),
    "schema_callback_progress_bar": ("expkit.callbacks.ProgressBar", ProgressBarOptions, False),
    "schema_callback_tensorboard_images": ("expkit.callbacks.TensorBoardImages", TensorBoardImagesOptions, False),
    "schema_callback_profiler": ("expkit.callbacks.Profiler", ProfilerOptions, False),
    "schema_callback_ema": ("expkit.callbacks.EMA", EMAOptions, False),
    "schema_logger_tensorboard": ("expkit.loggers.TensorBoardLogger", TensorBoardLoggerOptions, False),
}


def schema_for(target: str, options: type, partial: bool) -> type:
    """``options`` as a structured-config dataclass with ``_target_`` (and ``_partial_``) first."""
    hints = typing.get_type_hints(options)
    fields: list = [("_target_", str, dataclasses.field(default=target))]
    if partial:
        fields.append(("_partial_", bool, dataclasses.field(default=True)))
    for f in dataclasses.fields(options):
        default = (dict(default_factory=f.default_factory) if f.default_factory is not dataclasses.MISSING
                   else dict(default=f.default))
        fields.append((f.name, hints[f.name], dataclasses.field(**default)))
    name = options.__name__.removesuffix("Options") + "Schema"
    schema = dataclasses.make_dataclass(name, fields)
    schema.__module__ = __name__
    globals()[name] = schema  # importable by name: configs holding it pickle into launcher workers
    return schema


SCHEMAS: dict[str, type] = {name: schema_for(*spec) for name, spec in COMPONENTS.items()}
#: Schema class -> the options it was made from (the config checks read the rules there).
OPTIONS_OF_SCHEMA: dict[type, type] = {SCHEMAS[name]: spec[1] for name, spec in COMPONENTS.items()}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent: storing again replaces)."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
