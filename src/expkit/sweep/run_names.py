"""Sweep jobs named by what they change: ``<sweep dir>/3_model=cnn,optimizer.lr=0.01``.

TensorBoard names a run by its folder, so the job folder is the run's name there (and in
``ls``). Two parts make it:

- ``job_dir_name`` (the ``expkit.job_dir`` resolver in ``hydra.sweep.subdir``): the job's
  number, then Hydra's ``override_dirname`` made safe for one folder name (no ``/``) and
  cut to ``MAX_CHARS``; the number keeps names unique and in launch order.
- ``NameRunsByOverrides`` (a Hydra callback): at the start of a multirun, overrides given
  one value on the command line (``trainer.max_epochs=3``, ``experiment=...``) are the
  same for every job, so they are added to Hydra's own
  ``hydra.job.config.override_dirname.exclude_keys`` and names carry only the swept keys.
"""
from __future__ import annotations

import re
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

RESOLVER = "expkit.job_dir"
MAX_CHARS = 60  # of the overrides part: TensorBoard's run list cuts longer names anyway
EXCLUDE_KEY = "hydra.job.config.override_dirname.exclude_keys"


def job_dir_name(num: Any, overrides: str = "") -> str:
    """``3`` and ``model=cnn,data.root=/d`` -> ``3_model=cnn,data.root=_d`` (one folder, short)."""
    safe = re.sub(r"[/\\\x00]", "_", str(overrides)).strip(". ")
    if len(safe) > MAX_CHARS:
        safe = safe[:MAX_CHARS - 1].rstrip(",") + "~"
    return f"{num}_{safe}" if safe else str(num)


def register_resolver() -> None:
    """Make ``${expkit.job_dir:...}`` resolvable in this process (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, job_dir_name)


def constant_keys(task_overrides: list[str]) -> list[str]:
    """Keys of the command line's overrides that are not sweeps (one value for every job)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides=list(task_overrides))
    return [o.key_or_group for o in parsed if not o.is_sweep_override()]  # what Hydra's exclude_keys match


class NameRunsByOverrides(Callback):
    """Leave the command line's single-valued overrides out of the job folder names.

    Also registers the resolver, here and in launcher workers (joblib, submitit), which get
    this callback pickled with Hydra's context but never run the entry point's ``prepare()``.
    """

    def __init__(self) -> None:
        register_resolver()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        register_resolver()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_overrides = list(config.hydra.overrides.hydra)
        if any(o.split("=", 1)[0].lstrip("+~") == EXCLUDE_KEY for o in hydra_overrides):
            return  # the user chose the names' keys
        keys = [*config.hydra.job.config.override_dirname.exclude_keys,
                *constant_keys(list(config.hydra.overrides.task))]
        if keys:
            quoted = ",".join("'" + k.replace("\\", "\\\\").replace("'", "\\'") + "'" for k in keys)
            with read_write(config.hydra):
                # each job's config is composed again from these overrides (Hydra's load_sweep_config)
                config.hydra.overrides.hydra.append(f"{EXCLUDE_KEY}=[{quoted}]")
