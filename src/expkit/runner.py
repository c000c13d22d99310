"""What every entry point does around its work: check the config, record it, run,
turn known failures into one line and an exit code, and write the results.

``train.py`` and ``eval.py`` call ``run(cfg, work)``; ``work`` builds objects from the
config and returns the final metrics.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from expkit import run_lock, signals
from expkit.config import ConfigError, validate
from expkit.config.tree import config_tree
from expkit.files import write_json_atomic
from expkit.logging_setup import quiet_other_ranks

log = logging.getLogger("expkit")


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


def _origin(error: BaseException) -> dict[str, str]:
    """Type, message and file:line of the code that raised: the innermost frame of the
    original exception (through Hydra's instantiate wrapper to the user's own error)."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return {"type": type(error).__name__, "message": " ".join(str(error).split()), "where": where}


#: This attempt's identity in status.json (pid, host, start time, attempt number).
_attempt: dict[str, Any] = {}


def _start_attempt(directory: Path) -> None:
    previous = read_status(directory)
    _attempt.clear()
    _attempt.update({"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "attempt": int(previous.get("attempt") or 1) + 1 if previous else 1})
    _record(directory, "running")


def read_status(directory: Path) -> dict[str, Any]:
    """The run directory's status.json (an earlier attempt's, before this one writes), or {}."""
    try:
        return json.loads((directory / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _record(directory: Path, status: str, error: str | None = None,
            metrics: dict[str, float] | None = None, **extra: Any) -> None:
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    write_json_atomic(directory / "status.json",
                      {"status": status, "error": error, "overrides": overrides, **_attempt, **extra})
    if metrics is not None:
        write_json_atomic(directory / "metrics.json", metrics)


def checkpoint_folder(cfg: DictConfig, directory: Path) -> Path:
    """Where the run's checkpoints go (``ModelCheckpoint``'s ``dirpath``, else ``<run dir>/checkpoints``)."""
    folder = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(folder or directory / "checkpoints")


def _record_if_possible(directory: Path, status: str, **fields: Any) -> None:
    """``_record`` while reporting another failure: a disk that fails here too gets one warning line."""
    try:
        _record(directory, status, **fields)
    except OSError as e:
        log.warning("could not write %s: %s", directory / "status.json", e.strerror or e)


def resumable_checkpoint(cfg: DictConfig, directory: Path) -> Path | None:
    """The checkpoint a stopped run resumes from (``last.ckpt`` of its checkpoint folder), if any."""
    path = checkpoint_folder(cfg, directory) / "last.ckpt"
    return path if path.is_file() else None


def _stopped(cfg: DictConfig, directory: Path, name: str, rank_zero: bool) -> None:
    """A signal outside the training loop: record ``preempted`` and say what to resume from."""
    from expkit.exit_codes import EXIT_PREEMPTED

    checkpoint = resumable_checkpoint(cfg, directory)
    if checkpoint is None:
        message = f"stopped by {name} before training saved a checkpoint; nothing to resume from: start again"
    else:
        message = (f"stopped by {name} outside the training loop; resume with ckpt_path={checkpoint} "
                   f"(hydra.run.dir={directory} ckpt_path=last)")
    log.warning("%s", message)
    if rank_zero:
        _record_if_possible(directory, "preempted", error=message, checkpoint=str(checkpoint) if checkpoint else None)
    sys.exit(EXIT_PREEMPTED)


def run(cfg: DictConfig, work: Callable[[DictConfig], dict[str, float]]) -> float | list[float] | None:
    """Run ``work(cfg)`` as one job; returns ``cfg.optimized_metric`` for sweepers."""
    from expkit.engine import distributed as dist

    directory = run_dir()
    rank_zero = dist.is_rank_zero()
    quiet_other_ranks(dist.rank())
    signals.runner_reports(True)
    try:
        if rank_zero:
            run_lock.acquire(directory)  # a single run took it before Hydra wrote here; a sweep job takes it now
            _start_attempt(directory)
        return _run(cfg, work, directory, rank_zero)
    except run_lock.RunDirError as e:
        from expkit.exit_codes import EXIT_BAD_INPUT

        log.error("error: %s", e)
        sys.exit(EXIT_BAD_INPUT)
    except signals.SignalStop as e:
        _stopped(cfg, directory, e.signal_name, rank_zero)
    except KeyboardInterrupt:
        signals.ignore_further()  # a third Ctrl-C must not cut the report of the second short
        log.warning("interrupted by a second Ctrl-C: stopped at once, without saving")
        if rank_zero:
            _record_if_possible(directory, "interrupted", error="interrupted by a second Ctrl-C (nothing saved at that point)")
        from expkit.exit_codes import EXIT_INTERRUPTED

        sys.exit(EXIT_INTERRUPTED)
    finally:
        signals.runner_reports(False)
        if is_multirun():
            run_lock.release(directory)
    return None


def _run(cfg: DictConfig, work: Callable[[DictConfig], dict[str, float]], directory: Path,
         rank_zero: bool) -> float | None:
    from expkit.engine import distributed as dist
    from expkit.engine.preemption import Preempted
    from expkit.exit_codes import EXIT_FAILED, EXIT_PREEMPTED, exit_code_for
    from expkit.launch import ddp

    try:
        validate(cfg)
        dist.set_collective_timeout(cfg.get("collective_timeout_s"))
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
            _record_if_possible(directory, "preempted", error=_one_line(e), checkpoint=e.checkpoint)
        sys.exit(EXIT_PREEMPTED)
    except Exception as e:  # noqa: BLE001 - every failure becomes a status and an exit code
        code = exit_code_for(e)
        message = _one_line(e)
        if dist.torchrun_world_size() > 1 and ddp.lost_peer(message):  # torchrun: not the root cause
            message = f"another rank failed first (its error is in the job's output); rank {dist.rank()} saw: {message}"
        if rank_zero:
            _record_if_possible(directory, "failed", error=message, **({} if code else {"exception": _origin(e)}))
        if code is None:  # not a known failure: a bug in someone's code, keep the whole traceback
            log.error("run failed: %s", message, exc_info=e)
            if is_multirun():
                return worst_value(cfg)
            sys.exit(EXIT_FAILED)
        if is_multirun():
            log.error("job failed: %s", message)
            return worst_value(cfg)  # the sweep goes on; the summary lists this job as failed
        log.error("error: %s", message)
        sys.exit(code)
    from expkit.sweep.objective import objective_value, was_pruned

    if rank_zero:
        _record(directory, "pruned" if was_pruned(metrics) else "ok", metrics=metrics)
    return objective_value(metrics, cfg.get("optimized_metric", "val/acc"), worst_value(cfg))
