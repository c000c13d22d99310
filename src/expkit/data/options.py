"""The datamodules' options, defined once (see ``expkit.options``). Torch-free.

A new datamodule subclasses ``DataOptions`` for its own options next to its class
(``Options = MyOptions``); nothing central is edited.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

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
    augment: List[Any] = option([], doc="training-batch transforms (expkit.data.augment or torchvision v2)")


@dataclass
class DigitsOptions(DataOptions):
    val_fraction: float = option(0.1, FRACTION)
    test_fraction: float = option(0.2, FRACTION)


@dataclass
class MNISTOptions(DataOptions):
    """MNIST and Fashion-MNIST."""

    batch_size: int = option(128, integer(1), "global: all ranks together (each takes batch_size / world size)")
    root: str = option("data", doc="holds <MNIST|FashionMNIST>/raw/")
    download: bool = option(False)
    val_fraction: float = option(0.1, FRACTION)


@dataclass
class SyntheticOptions(DataOptions):
    input_shape: List[int] = option([1, 8, 8], doc="the shape of one input")
    num_classes: int = option(10, integer(2))
    num_train: int = option(2048, integer(1))
    num_val: int = option(256, integer(1))
    num_test: int = option(256, integer(1))


@dataclass
class DiabetesOptions(DataOptions):
    val_fraction: float = option(0.1, FRACTION)
    test_fraction: float = option(0.2, FRACTION)
    standardize_target: bool = option(True, doc="targets as z-scores from the train split's mean and std")


@dataclass
class TextOptions(DataOptions):
    path: Optional[str] = option(None, doc="a UTF-8 text file; null: the Python documentation's topic texts")
    block_size: int = option(128, integer(1), "characters per window (the model's context)")
    stride: Optional[int] = option(None, optional(integer(1)), "characters between window starts; null: block_size")
    max_chars: Optional[int] = option(None, optional(integer(2)), "use only the first N characters; null: all")
    val_fraction: float = option(0.05, FRACTION, "the text's end is cut into val, then test: no overlap")
    test_fraction: float = option(0.05, FRACTION)


@dataclass
class CIFAR10Options(DataOptions):
    batch_size: int = option(128, integer(1), "global: all ranks together (each takes batch_size / world size)")
    root: str = option("data", doc="holds cifar-10-batches-py/ (cifar-100-python/ for CIFAR-100)")
    download: bool = option(False, doc="fetch the archive (checksum verified) when the files are missing")
    val_fraction: float = option(0.1, FRACTION, "of the 50,000 training images")


@dataclass
class CIFAR100Options(CIFAR10Options):
    """The same options; cifar-100-python/ under root."""


@dataclass
class ImageFolderOptions(DataOptions):
    batch_size: int = option(64, integer(1), "global: all ranks together (each takes batch_size / world size)")
    num_workers: int = option(2, integer(0), "DataLoader workers that decode the images")
    root: str = option("data/images", doc="holds <class>/<image>, or train/ and test/ (and val/) laid out so")
    image_size: int = option(64, integer(1), "every image is resized to image_size x image_size")
    num_classes: Optional[int] = option(None, optional(integer(1)), "null: one class per subfolder; a number is checked")
    val_fraction: float = option(0.1, FRACTION)
    test_fraction: float = option(0.1, FRACTION, "when the folder has no split of its own")
    mean: List[float] = option([0.485, 0.456, 0.406], doc="per channel, after scaling to [0, 1]")
    std: List[float] = option([0.229, 0.224, 0.225])
