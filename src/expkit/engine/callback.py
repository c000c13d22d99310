"""The hooks a callback can implement; names follow PyTorch Lightning's."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from expkit.engine.trainer import Trainer
    from expkit.tasks.base import StepResult, Task


class Callback:
    """Override what you need. State that must survive a resume goes in ``state_dict``."""

    @property
    def state_key(self) -> str:
        """Where this callback's state lives in a checkpoint (unique per class by default)."""
        return type(self).__name__

    def on_fit_start(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_fit_end(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_train_epoch_start(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_train_epoch_end(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_train_batch_end(self, trainer: "Trainer", task: "Task", result: "StepResult",
                           batch: Any, batch_idx: int) -> None: ...
    def on_sanity_check_end(self, trainer: "Trainer", task: "Task", metrics: dict[str, float]) -> None:
        """After the sanity validation at the start of fit (not logged): ``metrics`` are its values."""
    def on_validation_start(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_validation_batch_end(self, trainer: "Trainer", task: "Task", result: "StepResult",
                                batch: Any, batch_idx: int) -> None: ...
    def on_validation_end(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_mid_epoch_validation_end(self, trainer: "Trainer", task: "Task") -> None:
        """After a ``val_check_interval`` validation, once every callback's ``on_validation_end`` ran."""
    def on_test_end(self, trainer: "Trainer", task: "Task") -> None: ...
    def on_exception(self, trainer: "Trainer", task: "Task", exception: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CheckpointCallback(Callback):
    """The callback that owns a run's checkpoint files (``ModelCheckpoint``).

    The trainer finds it by this type, and takes from it the checkpoint folder (for
    preemption saves), the best checkpoint (``test(ckpt_path='best')``) and the best epoch.
    """

    dirpath: Path
    best_model_path: str | None = None
    best_epoch: int | None = None
