"""Loggers (names load on first use: ``loggers.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["TensorBoardLogger"]
__getattr__, __dir__ = exports(__name__, {"TensorBoardLogger": "tensorboard"})
