"""A run owns its run directory: an exclusive OS lock on ``<run dir>/.run.lock``.

``flock`` dies with the process (however it ends), so a crashed run never leaves a
stale lock. A second run in the same directory is refused before it writes anything
there, with the holder's PID. The run directory's file system is checked too: a
directory that cannot be created or written, or a full disk, is one line at the start
instead of a traceback later.
"""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import IO

from expkit.errors import InputError

LOCK_FILE = ".run.lock"
#: A run directory's file system needs at least this much free space to start a run.
MIN_FREE_BYTES = 2 << 20


class RunDirError(InputError):
    """The run directory cannot be used (in use by another run, not writable, full)."""


_held: dict[Path, IO[str]] = {}


def acquire(directory: Path) -> None:
    """Lock ``directory`` for this process (a no-op if it already holds it)."""
    directory = Path(directory).resolve()
    if directory in _held:
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock, no lock
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK_FILE, "a+")  # creates, never truncates: the holder's PID stays
    except OSError as e:
        raise RunDirError(f"run directory {directory}: cannot be created or written ({e.strerror})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirError(f"run directory {directory}: in use by another run ({holder}); wait for it to end "
                              "or use another hydra.run.dir") from None
        raise RunDirError(f"run directory {directory}: cannot be locked ({e.strerror})") from None
    try:
        check_space(directory)
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
    except OSError as e:
        handle.close()
        raise RunDirError(f"run directory {directory}: cannot be written ({e.strerror})") from None
    _held[directory] = handle


def check_space(directory: Path) -> None:
    """A full file system fails at the start, not at the first checkpoint."""
    try:
        stats = os.statvfs(directory)
    except (OSError, AttributeError):
        return
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device: {free // 1024} KB free, a run needs at least "
                                    f"{MIN_FREE_BYTES // 1024} KB")


def release(directory: Path) -> None:
    """Give the lock up (a sweep's next job in the same process); the OS does it at exit anyway."""
    handle = _held.pop(Path(directory).resolve(), None)
    if handle is not None:
        handle.close()
