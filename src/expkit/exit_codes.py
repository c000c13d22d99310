"""Exit statuses of ``train.py`` / ``eval.py``, and which errors map to them.

Known errors are reported as one line and one of these statuses; anything else is a bug
and keeps its traceback.
"""
from __future__ import annotations

from expkit.engine.preemption import EXIT_PREEMPTED

#: Failed while training (non-finite loss, a DDP worker's error).
EXIT_FAILED = 1
#: A config value, checkpoint or data file the run cannot use.
EXIT_BAD_INPUT = 2

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_PREEMPTED", "exit_code_for"]


def exit_code_for(error: BaseException) -> int | None:
    """The exit status for ``error``, or None when it is unexpected (a bug: show the traceback)."""
    from hydra.errors import InstantiationException

    from expkit.config import ConfigError
    from expkit.engine.checkpoint import CheckpointError
    from expkit.engine.preemption import Preempted
    from expkit.engine.trainer import NonFiniteLossError

    if isinstance(error, Preempted):
        return EXIT_PREEMPTED
    if isinstance(getattr(error, "exit_code", None), int):  # launch.ddp.WorkerFailed: the worker's own status
        return error.exit_code
    if isinstance(error, (ConfigError, CheckpointError, InstantiationException, FileNotFoundError, ValueError)):
        return EXIT_BAD_INPUT
    if isinstance(error, NonFiniteLossError):
        return EXIT_FAILED
    return None
