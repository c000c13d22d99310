"""The datamodules' options, defined once (see ``expkit.options``). Torch-free.

A new datamodule subclasses ``DataOptions`` for its own options next to its class
(``Options = MyOptions``); nothing central is edited.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from expkit.options import Options, Rule, integer, one_of, option, optional

LOADERS = ("auto", "memory", "dataloader")
FRACTION = Rule(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
                "must be a number in (0, 1)")


@dataclass
class DataOptions(Options):
    """What every datamodule accepts (``expkit.data.base.DataModule``)."""

    batch_size: int = option(64, integer(1), "global: all ranks together (each takes batch_size / world size)")
    eval_batch_size: Optional[int] = option(None, optional(integer(1)), "global like batch_size; null: max(batch_size, 256)")
    loader: str = option("auto", one_of(*LOADERS), "memory: tensors on the device; dataloader: torch DataLoader")
    num_workers: int = option(0, integer(0), "DataLoader path only")
    pin_memory: Optional[bool] = option(None, doc="DataLoader path; null: on CUDA")
    persistent_workers: bool = option(False, doc="DataLoader path: keep workers between epochs")
    prefetch_factor: Optional[int] = option(None, optional(integer(1)), "DataLoader path with workers")
    drop_last: bool = option(False)
    shuffle: bool = option(True, doc="false: the same batch order every epoch")
    seed: int = option(0, integer(0))
    input_shape: Optional[List[int]] = option(None, doc="read by the model configs; must match the data")
    num_classes: Optional[int] = option(None, optional(integer(1)), "read by the model configs")


@dataclass
class DigitsOptions(DataOptions):
    input_shape: Optional[List[int]] = option([1, 8, 8])
    num_classes: Optional[int] = option(10, optional(integer(1)))
    val_fraction: float = option(0.1, FRACTION)
    test_fraction: float = option(0.2, FRACTION)


@dataclass
class MNISTOptions(DataOptions):
    """MNIST and Fashion-MNIST."""

    batch_size: int = option(128, integer(1), "global: all ranks together (each takes batch_size / world size)")
    input_shape: Optional[List[int]] = option([1, 28, 28])
    num_classes: Optional[int] = option(10, optional(integer(1)))
    root: str = option("data", doc="holds <MNIST|FashionMNIST>/raw/")
    download: bool = option(False)
    val_fraction: float = option(0.1, FRACTION)


@dataclass
class SyntheticOptions(DataOptions):
    input_shape: Optional[List[int]] = option([1, 8, 8])
    num_classes: Optional[int] = option(10, optional(integer(2)))
    num_train: int = option(2048, integer(1))
    num_val: int = option(256, integer(1))
    num_test: int = option(256, integer(1))


