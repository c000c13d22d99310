"""The options of every built-in callback, defined once (see ``expkit.options``). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expkit.options import MODE, Options, Rule, integer, number, one_of, option, optional


@dataclass
class ModelCheckpointOptions(Options):
    dirpath: str = option("checkpoints", doc="where last.ckpt, best.ckpt and the top-k files go")
    monitor: Optional[str] = option("val/acc", doc="best.ckpt and the top k follow this metric; null: no best.ckpt")
    mode: str = option("max", MODE)
    save_top_k: int = option(1, Rule(lambda v: v == -1 or integer(0).test(v), "must be -1 (all) or an integer >= 0"),
                             "1: best.ckpt; k > 1: also the k best as epoch=E-step=S-<metric>=V.ckpt; "
                             "-1: all of them; 0: no best.ckpt")
    save_last: bool = option(True, doc="last.ckpt at every validation (and every_n_* below)")
    every_n_train_steps: Optional[int] = option(None, optional(integer(1)), "also save last.ckpt every N steps")
    every_n_epochs: int = option(1, integer(1), "save last.ckpt every N epochs")


@dataclass
class EarlyStoppingOptions(Options):
    monitor: str = option("val/acc")
    mode: str = option("max", MODE)
    patience: int = option(10, integer(1), "validations without improvement before stopping")
    min_delta: float = option(0.0, number(0), "smallest change that counts as an improvement")


@dataclass
class LearningRateMonitorOptions(Options):
    logging_interval: str = option("auto", one_of("auto", "epoch", "step"),
                                   "auto: per step when the scheduler steps per step, else per epoch")


@dataclass
class ProgressBarOptions(Options):
    refresh_seconds: float = option(0.5, number(0, exclusive=True))
    log_every_n_steps: int = option(50, integer(1), "without a terminal: a log line every N steps")
    tty: Optional[bool] = option(None, doc="null: a bar when stdout and stderr are terminals")


@dataclass
class TensorBoardImagesOptions(Options):
    num_classes: Optional[int] = option(None, optional(integer(1)), "null: the model's output width")
    log_confusion_matrix: bool = option(True, doc="classification")
    log_predictions: bool = option(True, doc="a grid of sample predictions (classification of images)")
    max_predictions: int = option(32, integer(1))
    log_scatter: bool = option(True, doc="predicted against true values (regression)")
    log_graph: bool = option(True, doc="the model graph, once")


@dataclass
class ProfilerOptions(Options):
    dirpath: str = option("profiler")
    wait: int = option(1, integer(0))
    warmup: int = option(1, integer(0))
    active: int = option(3, integer(1))
    record_shapes: bool = option(True)
    profile_memory: bool = option(False)
    with_stack: bool = option(False)


@dataclass
class EMAOptions(Options):
    decay: float = option(0.999, number(0, maximum=1), "per update: average = decay * average + (1 - decay) * weights")
    every_n_steps: int = option(1, integer(1), "update the average every N optimizer steps")
    warmup: bool = option(False, doc="decay min(decay, (1 + n) / (10 + n)) after n updates: early weights fade fast")
