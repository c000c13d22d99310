from expkit.callbacks.early_stopping import EarlyStopping
from expkit.callbacks.lr_monitor import LearningRateMonitor
from expkit.callbacks.model_checkpoint import ModelCheckpoint
from expkit.callbacks.profiler import Profiler
from expkit.callbacks.progress_bar import ProgressBar
from expkit.callbacks.tensorboard_images import TensorBoardImages

__all__ = ["EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "Profiler", "ProgressBar", "TensorBoardImages"]
