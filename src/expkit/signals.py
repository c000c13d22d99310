"""Stop signals outside the training loop: from the entry point's first line to its last.

The training loop has its own handler (``engine.preemption``: it saves ``last.ckpt`` at
the next step boundary). Before it is installed (imports, composing, building) and
after it is removed (the final test, the logger's finalize) this one handles SIGTERM,
SIGINT, SIGUSR1 and SIGUSR2: it raises ``SignalStop``, a ``SystemExit`` with the
preempted status (75), so the process ends without a traceback whatever it was doing.
The runner catches it once the run directory exists, records ``preempted`` in
``status.json`` and says what to resume from; before that this handler prints the
one line itself.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from expkit.exit_codes import EXIT_PREEMPTED

#: The signals a cluster or a user stops a run with (submitit's SLURM jobs get SIGUSR2).
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2")

_previous: dict[int, Any] = {}
#: True while the runner reports a stop itself (it knows the run directory).
_runner_reports = False


class SignalStop(SystemExit):
    """A stop signal arrived outside the training loop; exits 75 if nothing catches it."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(EXIT_PREEMPTED)
        self.signal_name = signal_name


def hand_on(signum: int, previous: Any, frame: FrameType | None = None) -> None:
    """Call ``previous``, the handler installed for ``signum`` before ours: a job runner's (submitit
    requeues the job there, and exits). Python's own Ctrl-C handler is skipped: it would only raise
    KeyboardInterrupt over the clean stop."""
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, frame)


def _handle(signum: int, frame: FrameType | None) -> None:
    hand_on(signum, _previous.get(signum), frame)
    if signal.getsignal(signum) is not _handle:
        return  # handed on by the training loop's handler, which stops the run itself
    name = signal.Signals(signum).name
    if not _runner_reports:
        os.write(2, f"error: stopped by {name} while starting, before the run directory existed; "
                    "nothing to resume from: start again\n".encode())
    raise SignalStop(name)


def install() -> None:
    """Handle the stop signals from now on (main thread only; idempotent)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not _handle:
            _previous[signum] = signal.getsignal(signum)
            signal.signal(signum, _handle)


def runner_reports(active: bool) -> None:
    """The runner reports stops from now on (``True``), or no longer (``False``)."""
    global _runner_reports
    _runner_reports = active


def ignore_further() -> None:
    """Ignore the stop signals from now on: the run is already ending (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
