from expkit.data.base import DataModule
from expkit.data.digits import DigitsDataModule
from expkit.data.mnist import FashionMNISTDataModule, MNISTDataModule
from expkit.data.synthetic import SyntheticDataModule

__all__ = ["DataModule", "DigitsDataModule", "FashionMNISTDataModule", "MNISTDataModule", "SyntheticDataModule"]
