"""expkit's own input errors: the ones that become one line and exit status 2.

Only expkit raises these, for input it checks itself: a config value, a checkpoint
file, a data file it looks for, a resume that does not match. Anything else that
escapes a run (a ``ValueError`` in a researcher's model, a bug in a callback) is not
one of these, so it keeps its traceback. Torch-free and Hydra-free: every layer
imports it.
"""
from __future__ import annotations


class InputError(Exception):
    """Bad input that expkit detected; ``str(error)`` is the one line the user sees."""


class ConfigError(InputError, ValueError):
    """A config value or option that is not allowed: names the key, the value and what is allowed."""


class CheckpointError(InputError, RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and why."""


class DataError(InputError, FileNotFoundError):
    """A data file or folder expkit looks for is missing or unreadable; names the path."""
