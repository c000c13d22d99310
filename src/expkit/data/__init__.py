"""Built-in datamodules (names load on first use: ``data.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["DataModule", "DigitsDataModule", "FashionMNISTDataModule", "MNISTDataModule", "SyntheticDataModule"]
__getattr__, __dir__ = exports(__name__, {
    "DataModule": "base", "DigitsDataModule": "digits", "FashionMNISTDataModule": "mnist",
    "MNISTDataModule": "mnist", "SyntheticDataModule": "synthetic"})
