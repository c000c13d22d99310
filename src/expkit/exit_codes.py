"""Exit statuses of ``train.py`` / ``eval.py``, and which errors map to them.

Only expkit's own input errors (``expkit.errors.InputError``, also when Hydra's
``instantiate`` wraps one raised in a component's constructor) and a few known
failures become one line and a status; anything else is a bug in someone's code
(a model's ``__init__``, a task's step, a callback) and keeps its traceback (exit 1).
Torch-free: the signal handlers of the entry points import it on their first line.
"""
from __future__ import annotations

import errno

#: A run that failed: a known failure (one line) or an unexpected error (a traceback).
EXIT_FAILED = 1
#: A config value, checkpoint, data file or run directory the run cannot use.
EXIT_BAD_INPUT = 2
#: Stopped by a signal (sysexits' EX_TEMPFAIL, "try again later"): resume or start again.
EXIT_PREEMPTED = 75
#: Stopped at once by a second Ctrl-C (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130
#: OS errors that say the disk, not the code, is the problem: one line, exit 1.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_PREEMPTED", "exit_code_for", "input_error"]


def input_error(error: BaseException) -> BaseException | None:
    """The ``InputError`` behind ``error`` (itself, or the cause of Hydra's instantiate wrapper)."""
    from expkit.errors import InputError

    if isinstance(error, InputError):
        return error
    from hydra.errors import InstantiationException

    if isinstance(error, InstantiationException) and isinstance(error.__cause__, InputError):
        return error.__cause__
    return None


def exit_code_for(error: BaseException) -> int | None:
    """The exit status for a known failure, or None when it is unexpected (show the traceback)."""
    if isinstance(getattr(error, "exit_code", None), int):  # Preempted, launch.ddp.WorkerFailed
        return error.exit_code
    if input_error(error) is not None:
        return EXIT_BAD_INPUT
    from expkit.engine.checkpoint import CheckpointWriteError
    from expkit.engine.preemption import Preempted
    from expkit.engine.trainer import NonFiniteLossError

    if isinstance(error, Preempted):
        return EXIT_PREEMPTED
    if isinstance(error, (NonFiniteLossError, CheckpointWriteError)):
        return EXIT_FAILED
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:  # a run file on a full or read-only disk
        return EXIT_FAILED
    return None
