"""Hydra callback (listed in ``conf/hydra/default.yaml``): take the run directory's lock
before Hydra writes anything into it (``.hydra/``, ``train.log``).

Runs after composing and before Hydra creates the directory, after ``SharedRunDir``
(under torchrun only rank 0 locks: the other ranks write nothing there). A directory
in use by another run, not writable or on a full disk is refused here, in one line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from expkit import run_lock
from expkit.entry import refuse


class LockRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get("RANK", "0") != "0":
            return
        directory = str(config.hydra.run.dir)  # resolves ${now:...}; pinned so Hydra uses this one
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = directory
        try:
            run_lock.acquire(Path(directory))
        except run_lock.RunDirError as e:
            refuse(e)  # raising would only make Hydra warn and go on
