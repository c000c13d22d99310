"""Typed schemas for the config groups, so Hydra rejects typos and wrong types while composing.

Each YAML option pulls its schema in first, by an absolute path and ``@_here_``:

    defaults:
      - /schema_trainer@_here_
      - _self_

A key the schema lacks (``trainer.max_epoch=5``) or a value of the wrong type
(``optimizer.lr=abc``) then fails before any object is built or torch is imported,
with Hydra's message naming the key. Schemas are stored as root configs (no group),
so ``--help`` never lists them as options. Value ranges are checked afterwards by
``expkit.config.checks``; a field is typed ``Any`` where the configs legitimately
use several types (``limit_train_batches``: null, a fraction or a count).

This module imports only Hydra and the standard library: ``train.py`` imports it
before ``hydra.main`` runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore

# Fields are annotated with ``typing`` names (not ``X | None``): OmegaConf reads the
# annotations at run time, on every supported Python version.


@dataclass
class TrainerSchema:
    _target_: str = "expkit.engine.Trainer"
    max_epochs: int = 10
    max_steps: int = -1
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32"
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    gradient_clip_algorithm: str = "norm"
    check_val_every_n_epoch: int = 1
    num_sanity_val_steps: int = 2
    log_every_n_steps: int = 50
    limit_train_batches: Any = None  # null | fraction in (0, 1] | number of batches (checks.py)
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    fast_dev_run: bool = False
    deterministic: bool = False
    num_threads: Optional[int] = 1
    compile: bool = False
    channels_last: bool = False
    matmul_precision: Optional[str] = None
    cudnn_benchmark: bool = False
    default_root_dir: str = "."


@dataclass
class DataSchema:
    """What every datamodule accepts (``expkit.data.base.DataModule``)."""

    _target_: str = "???"
    batch_size: int = 64
    eval_batch_size: Optional[int] = None
    loader: str = "auto"
    num_workers: int = 0
    drop_last: bool = False
    shuffle: bool = True
    seed: int = 0
    input_shape: List[int] = field(default_factory=list)
    num_classes: int = 10


@dataclass
class DigitsDataSchema(DataSchema):
    val_fraction: float = 0.1
    test_fraction: float = 0.2


@dataclass
class MNISTDataSchema(DataSchema):
    """MNIST and Fashion-MNIST."""

    root: str = "data"
    download: bool = False
    val_fraction: float = 0.1


@dataclass
class SyntheticDataSchema(DataSchema):
    num_train: int = 2048
    num_val: int = 256
    num_test: int = 256


@dataclass
class OptimizerSchema:
    _target_: str = "???"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class AdamSchema(OptimizerSchema):
    """Adam and AdamW."""

    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False


@dataclass
class SGDSchema(OptimizerSchema):
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False


@dataclass
class CosineSchedulerSchema:
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    _partial_: bool = True
    T_max: int = 10
    eta_min: float = 0.0


@dataclass
class StepSchedulerSchema:
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    _partial_: bool = True
    step_size: int = 3
    gamma: float = 0.1


@dataclass
class ModelCheckpointSchema:
    _target_: str = "expkit.callbacks.ModelCheckpoint"
    dirpath: str = "checkpoints"
    monitor: Optional[str] = "val/acc"
    mode: str = "max"
    save_last: bool = True
    every_n_train_steps: Optional[int] = None
    every_n_epochs: int = 1


@dataclass
class EarlyStoppingSchema:
    _target_: str = "expkit.callbacks.EarlyStopping"
    monitor: str = "val/acc"
    mode: str = "max"
    patience: int = 10
    min_delta: float = 0.0


@dataclass
class LearningRateMonitorSchema:
    _target_: str = "expkit.callbacks.LearningRateMonitor"
    logging_interval: str = "epoch"


@dataclass
class ProgressBarSchema:
    _target_: str = "expkit.callbacks.ProgressBar"
    refresh_seconds: float = 0.5
    log_every_n_steps: int = 50


@dataclass
class TensorBoardImagesSchema:
    _target_: str = "expkit.callbacks.TensorBoardImages"
    num_classes: Optional[int] = None


@dataclass
class ProfilerSchema:
    _target_: str = "expkit.callbacks.Profiler"
    dirpath: str = "tensorboard/profiler"
    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = True
    profile_memory: bool = False
    with_stack: bool = False


#: Config name -> schema. Names sit at the config root, outside every group.
SCHEMAS: dict[str, type] = {
    "schema_trainer": TrainerSchema,
    "schema_data_digits": DigitsDataSchema,
    "schema_data_mnist": MNISTDataSchema,
    "schema_data_synthetic": SyntheticDataSchema,
    "schema_optimizer_adam": AdamSchema,
    "schema_optimizer_sgd": SGDSchema,
    "schema_scheduler_cosine": CosineSchedulerSchema,
    "schema_scheduler_step": StepSchedulerSchema,
    "schema_callback_model_checkpoint": ModelCheckpointSchema,
    "schema_callback_early_stopping": EarlyStoppingSchema,
    "schema_callback_lr_monitor": LearningRateMonitorSchema,
    "schema_callback_progress_bar": ProgressBarSchema,
    "schema_callback_tensorboard_images": TensorBoardImagesSchema,
    "schema_callback_profiler": ProfilerSchema,
}


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent: storing again replaces)."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
