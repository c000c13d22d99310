"""What every entry point does around its work: check the config, record it, run,
turn known failures into one line and an exit code, and write the results.

``train.py`` and ``eval.py`` call ``run(cfg, work)``; ``work`` builds objects from the
config and returns the final metrics.
"""
from __future__ import annotations

import atexit
import gc
import logging
import math
import sys
from pathlib import Path
from typing import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from expkit.config import ConfigError, validate
from expkit.config.schema import register as register_schemas
from expkit.config.tree import config_tree
from expkit.files import write_json_atomic
from expkit.logging_setup import quiet_other_ranks

log = logging.getLogger("expkit")

# Every entry point (and every sweep worker process) composes configs that use the schemas.
register_schemas()


def _skip_final_collections() -> None:
    """At exit, park every live object in the garbage collector's permanent generation.

    The interpreter's shutdown otherwise runs full collections over the hundreds of
    thousands of objects torch and torch._dynamo create: about 0.8 s of a two-core
    machine's time after the run is over. Everything else still happens (the other
    exit handlers, flushing and closing of logs and files); only cyclic garbage left
    at exit is not collected, which the operating system reclaims anyway.
    """
    gc.freeze()


atexit.register(_skip_final_collections)  # registered early, so it runs after the other handlers


def run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def show_config_tree(cfg: DictConfig, directory: Path) -> None:
    """Print the composed config as a tree on stdout and keep it as ``config_tree.txt``."""
    tree = config_tree(cfg)
    (directory / "config_tree.txt").write_text(tree + "\n")
    if cfg.get("print_config", True):
        print(tree, flush=True)


def worst_value(cfg: DictConfig) -> float:
    """What a failed job reports to a sweeper: the worst possible value, never NaN."""
    return -math.inf if cfg.get("optimized_mode", "max") == "max" else math.inf


def resolve_ckpt_path(cfg: DictConfig, directory: Path) -> str | None:
    """``ckpt_path``: null, a file, ``last`` (this run dir's last.ckpt, which must exist) or
    ``auto`` (last.ckpt if it exists, else a fresh start: for requeued cluster jobs)."""
    value = cfg.get("ckpt_path")
    if value is None:
        return None
    if value in ("last", "auto"):
        path = directory / "checkpoints" / "last.ckpt"
        if path.is_file():
            return str(path)
        if value == "auto":
            log.info("ckpt_path=auto: no %s yet, starting fresh", path)
            return None
        raise ConfigError(f"ckpt_path=last: {path} does not exist (set hydra.run.dir to the run to resume)")
    if not Path(value).is_file():
        raise ConfigError(f"ckpt_path={value}: no such file")
    if Path(value).resolve().parent.parent != directory.resolve():
        log.info("resuming %s in a new run directory %s (pass hydra.run.dir=<its run directory> to continue "
                 "in the same one, with the same TensorBoard run)", value, directory)
    return str(value)


def _one_line(error: BaseException) -> str:
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        key = getattr(error, "full_key", "") or ""
        text = f"{key}: {error.__cause__}" if key else str(error.__cause__)
    else:
        text = str(error)
    return " ".join(text.split()) or type(error).__name__


def _record(directory: Path, status: str, error: str | None = None,
            metrics: dict[str, float] | None = None) -> None:
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_json_atomic(directory / "status.json", {"status": status, "error": error, "overrides": overrides})
    if metrics is not None:
        write_json_atomic(directory / "metrics.json", metrics)


def run(cfg: DictConfig, work: Callable[[DictConfig], dict[str, float]]) -> float | list[float] | None:
    """Run ``work(cfg)`` as one job; returns ``cfg.optimized_metric`` for sweepers."""
    from expkit.engine import distributed as dist
    from expkit.engine.preemption import Preempted
    from expkit.exit_codes import EXIT_PREEMPTED, exit_code_for
    from expkit.launch import ddp

    directory = run_dir()
    rank_zero = dist.is_rank_zero()
    quiet_other_ranks(dist.rank())
    try:
        validate(cfg)
        if rank_zero:
            OmegaConf.save(cfg, directory / "config.yaml", resolve=True)
            show_config_tree(cfg, directory)
            log.info("run directory: %s", directory)
        if ddp.should_launch(cfg):
            metrics = ddp.launch(cfg, work)  # trainer=ddp: start the workers, get rank 0's metrics
        else:
            ddp.check_torchrun_world(cfg)
            metrics = work(cfg)
    except Preempted as e:
        log.warning("%s", e)
        if rank_zero:
            _record(directory, "preempted", error=_one_line(e))
        sys.exit(EXIT_PREEMPTED)
    except Exception as e:  # noqa: BLE001 - every failure becomes one line, a status and an exit code
        message = _one_line(e)
        if dist.torchrun_world_size() > 1 and ddp.lost_peer(message):  # torchrun: not the root cause
            message = f"another rank failed first (its error is in the job's output); rank {dist.rank()} saw: {message}"
        if rank_zero:
            _record(directory, "failed", error=message)
        if is_multirun():
            log.exception("job failed: %s", message)
            return worst_value(cfg)  # the sweep goes on; the summary lists this job as failed
        code = exit_code_for(e)
        if code is None:
            raise  # not a known failure: a bug, keep the traceback
        log.error("error: %s", message)
        sys.exit(code)
    from expkit.sweep.objective import objective_value, was_pruned

    if rank_zero:
        _record(directory, "pruned" if was_pruned(metrics) else "ok", metrics=metrics)
    return objective_value(metrics, cfg.get("optimized_metric", "val/acc"), worst_value(cfg))
