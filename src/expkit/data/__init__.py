"""Built-in datamodules (names load on first use: ``data.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "DataModule", "DiabetesDataModule", "DigitsDataModule",
           "FashionMNISTDataModule", "ImageFolderDataModule", "MNISTDataModule", "SyntheticDataModule", "TextDataModule"]
__getattr__, __dir__ = exports(__name__, {
    "CIFAR10DataModule": "cifar", "CIFAR100DataModule": "cifar", "DataModule": "base", "DiabetesDataModule": "diabetes",
    "DigitsDataModule": "digits", "FashionMNISTDataModule": "mnist", "ImageFolderDataModule": "image_folder",
    "MNISTDataModule": "mnist", "SyntheticDataModule": "synthetic", "TextDataModule": "text"})
