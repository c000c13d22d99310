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
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from expkit.launch.slurm import adopt_slurm_ranks
from expkit.logging_setup import rank_logging_config

#: Store key for rank 0's run directory (one per attempt: the store outlives a restart of the workers).
RUN_DIR_KEY = "expkit/run_dir"


def in_multi_process_job() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


class SharedRunDir(Callback):
    """Make every rank of a torchrun job use rank 0's run directory."""

    def __init__(self, timeout_s: float = 300.0) -> None:
        self.timeout_s = timeout_s

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        adopt_slurm_ranks()  # `srun -n N python train.py ...`: the tasks are the ranks
        if not in_multi_process_job():
            return
        from expkit.engine import distributed as dist

        store = dist.env_store(self.timeout_s)
        rank = int(os.environ["RANK"])
        with read_write(config.hydra), open_dict(config.hydra):
            if rank == 0:
                directory = rank_zero_run_dir(config)
                store.set(f"{RUN_DIR_KEY}/{restart_count()}", directory)
            else:
                directory = store.get(f"{RUN_DIR_KEY}/{restart_count()}").decode()  # waits for rank 0
                config.hydra.output_subdir = None
                config.hydra.job_logging = rank_logging_config(rank)
            config.hydra.run.dir = directory
        if restart_count() > 0:
            resume_after_restart(config, Path(directory))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        adopt_slurm_ranks()  # a sweep job of several SLURM tasks (submitit): its run directory is fixed

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if in_multi_process_job():
            from expkit.entry import refuse
            from expkit.errors import ConfigError

            refuse(ConfigError("a sweep (-m) under torchrun would run the whole sweep on every rank; start the sweep "
                               "with plain python and trainer=ddp instead: each job launches its own workers"))


def restart_count() -> int:
    """How often torchrun's agent restarted this job's workers (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def rank_zero_run_dir(config: DictConfig) -> str:
    """Rank 0's run directory: resolved now (``${now:...}``), or, once torchrun has restarted the
    workers, the first attempt's, found in ``<paths.log_dir>/.torchrun/<rdzv id>`` (written only
    when restarts are allowed; on the shared output folder, so any node can read it)."""
    registry = None
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0:
        registry = Path(config.paths.log_dir) / ".torchrun" / os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if restart_count() > 0 and registry.is_file():
            return registry.read_text().strip()
    directory = str(config.hydra.run.dir)
    if registry is not None:
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text(directory)
    return directory


def resume_after_restart(config: DictConfig, directory: Path) -> None:
    """Restarted workers continue from the run's last.ckpt (the rule of ``ckpt_path=auto``)."""
    if config.get("ckpt_path") in (None, "auto") or (directory / "checkpoints" / "last.ckpt").is_file():
        with read_write(config), open_dict(config):
            config.ckpt_path = "auto"
