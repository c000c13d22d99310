"""Built-in datamodules (names load on first use: ``data.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["DataModule", "DiabetesDataModule", "DigitsDataModule", "FashionMNISTDataModule", "MNISTDataModule",
           "SyntheticDataModule", "TextDataModule"]
__getattr__, __dir__ = exports(__name__, {
    "DataModule": "base", "DiabetesDataModule": "diabetes", "DigitsDataModule": "digits",
    "FashionMNISTDataModule": "mnist", "MNISTDataModule": "mnist", "SyntheticDataModule": "synthetic",
    "TextDataModule": "text"})
