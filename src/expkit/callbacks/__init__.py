"""Built-in callbacks (names load on first use: ``callbacks.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["EMA", "EarlyStopping", "LearningRateMonitor", "ModelCheckpoint", "Profiler", "ProgressBar",
           "TensorBoardImages"]
__getattr__, __dir__ = exports(__name__, {
    "EMA": "ema", "EarlyStopping": "early_stopping", "LearningRateMonitor": "lr_monitor",
    "ModelCheckpoint": "model_checkpoint", "Profiler": "profiler", "ProgressBar": "progress_bar", "TensorBoardImages": "tensorboard_images"})
