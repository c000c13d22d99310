from expkit.loggers.tensorboard import TensorBoardLogger

__all__ = ["TensorBoardLogger"]
