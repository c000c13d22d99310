"""``torchrun --nproc_per_node=N train.py trainer=ddp``: every rank composes, all use one run directory.

Under torchrun each rank runs the entry point, so each would resolve ``${now:...}``
in ``hydra.run.dir`` at its own microsecond and make its own directory. This Hydra
callback (listed in ``conf/hydra/default.yaml``) runs after composing and before
Hydra creates the directory: rank 0 publishes its resolved run directory in the
job's rendezvous store, the other ranks take it, and they write nothing of Hydra's
(no ``.hydra/``, no log file: warnings and errors go to stderr). Outside torchrun
it does nothing and imports nothing heavy.
"""
from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from expkit.logging_setup import rank_logging_config

#: Store key for rank 0's run directory (the agent store is already scoped to one attempt).
RUN_DIR_KEY = "expkit/run_dir"


def in_multi_process_job() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


class SharedRunDir(Callback):
    """Make every rank of a torchrun job use rank 0's run directory."""

    def __init__(self, timeout_s: float = 300.0) -> None:
        self.timeout_s = timeout_s

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not in_multi_process_job():
            return
        from expkit.engine import distributed as dist

        store = dist.env_store(self.timeout_s)
        rank = int(os.environ["RANK"])
        with read_write(config.hydra), open_dict(config.hydra):
            if rank == 0:
                directory = str(config.hydra.run.dir)  # resolves ${now:...} once, here
                store.set(RUN_DIR_KEY, directory)
            else:
                directory = store.get(RUN_DIR_KEY).decode()  # waits for rank 0
                config.hydra.output_subdir = None
                config.hydra.job_logging = rank_logging_config(rank)
            config.hydra.run.dir = directory

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if in_multi_process_job():
            from expkit.entry import refuse
            from expkit.errors import ConfigError

            refuse(ConfigError("a sweep (-m) under torchrun would run the whole sweep on every rank; start the sweep "
                               "with plain python and trainer=ddp instead: each job launches its own workers"))
