"""Turn SIGTERM / SIGUSR1 / SIGUSR2 / SIGINT into a flag the training loop checks at step boundaries.

Cluster schedulers (SLURM) send SIGTERM or SIGUSR1 some time before they kill a
job; submitit's SLURM jobs get SIGUSR2. Doing real work inside a signal handler is
unsafe, so the handler only records the signal; the trainer then saves a
checkpoint at the next step boundary, hands the signal on to whatever handled it
before training started (submitit requeues the job there), and stops with
``Preempted``. A second SIGINT interrupts at once.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

from expkit.engine import distributed as dist
from expkit.signals import hand_on

from expkit.exit_codes import EXIT_PREEMPTED  # noqa: F401  (75; re-exported as expkit.engine.EXIT_PREEMPTED)

HANDLED = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")


class Preempted(Exception):
    """Training stopped on a signal; ``checkpoint`` resumes it exactly."""

    def __init__(self, signal_name: str, checkpoint: str | None) -> None:
        super().__init__(f"stopped by {signal_name} at a step boundary; resume with ckpt_path={checkpoint}"
                         if checkpoint is not None else f"stopped by {signal_name} before anything was saved; start again")
        self.signal_name, self.checkpoint = signal_name, checkpoint


class PreemptionHandler:
    def __init__(self) -> None:
        self.received: str | None = None
        self._distributed = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if name == "SIGINT" and self.received == "SIGINT":
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.received = name

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread
        for name in HANDLED:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._handle)

    def __enter__(self) -> "PreemptionHandler":
        self.install()
        self._distributed = dist.is_distributed()  # asked once: the check runs every step
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def requested(self, step: int, every: int, at_epoch_end: bool) -> bool:
        """Did any rank receive a stop signal? Checked every step in one process; under DDP
        every ``every`` steps and at epoch ends, so no collective runs per step."""
        if not self._distributed:
            return self.received is not None
        if not at_epoch_end and step % every:
            return False
        flag = dist.all_reduce_max(1.0 if self.received else 0.0)
        if flag and self.received is None:
            self.received = "SIGTERM"  # another rank got it: stop the same way
        return bool(flag)

    def forward(self) -> None:
        """Call the Python handler that was installed for the received signal before ours
        (a job runner's: submitit requeues the job and exits)."""
        signum = getattr(signal, self.received or "", None)
        if signum is not None:
            hand_on(signum, self._previous.get(signum))

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
