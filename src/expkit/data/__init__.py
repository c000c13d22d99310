"""Built-in datamodules (names load on first use: ``data.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "DataModule", "DigitsDataModule", "FashionMNISTDataModule",
           "ImageFolderDataModule", "MNISTDataModule", "SyntheticDataModule"]
__getattr__, __dir__ = exports(__name__, {
    "CIFAR10DataModule": "cifar", "CIFAR100DataModule": "cifar", "ImageFolderDataModule": "image_folder",
    "DataModule": "base", "DigitsDataModule": "digits", "FashionMNISTDataModule": "mnist",
    "MNISTDataModule": "mnist", "SyntheticDataModule": "synthetic"})
