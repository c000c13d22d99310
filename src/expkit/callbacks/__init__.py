from expkit.callbacks.early_stopping import EarlyStopping
from expkit.callbacks.lr_monitor import LearningRateMonitor
from expkit.callbacks.model_checkpoint import ModelCheckpoint
from expkit.callbacks.progress_bar import ProgressBar

__all__ = ["EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "ProgressBar"]
