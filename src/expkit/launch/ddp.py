"""``python train.py trainer=ddp`` (or ``trainer=fsdp``): the composed run starts its own workers.

Hydra composes once, in the parent, which owns the run directory. The parent starts
``trainer.devices`` workers through torch's elastic launcher (the engine behind
torchrun) with a standalone rendezvous on localhost, and hands each worker the
resolved config as plain data plus the parent's Hydra runtime config (so
``run_dir()`` and the log file are the parent's). Every worker builds the objects
and trains; rank 0 appends to the same ``train.log`` and writes TensorBoard and
checkpoints; other ranks log warnings to stderr only. The parent gets rank 0's
metrics back. When a worker fails the launcher stops the others and the parent
reports the first failure as one line.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable

from expkit import signals
from expkit.config import ConfigError
from expkit.engine import distributed as dist
from expkit.engine.options import DISTRIBUTED
from expkit.exit_codes import EXIT_FAILED, EXIT_PREEMPTED, exit_code_for
from expkit.logging_setup import quiet_other_ranks

log = logging.getLogger("expkit")

#: Seconds the launcher gives the other workers to stop after one failed, before SIGKILL.
SHUTDOWN_TIMEOUT_S = 30


class WorkerFailed(RuntimeError):
    """A worker of a DDP run failed; the message is one line naming the rank and its error."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def should_launch(cfg: Any) -> bool:
    """DDP or FSDP asked for, and we are not already a worker (of this launcher or of torchrun)."""
    return cfg.trainer.get("strategy") in DISTRIBUTED and not dist.launched_by_torchrun()


def check_torchrun_world(cfg: Any) -> None:
    """Several torchrun processes without DDP/FSDP would each train alone on all the data."""
    world = dist.torchrun_world_size()
    if world > 1 and cfg.trainer.get("strategy") not in DISTRIBUTED:
        starter = "SLURM (tasks of one step)" if os.environ.get("EXPKIT_SLURM_RANKS") else "torchrun"
        raise ConfigError(f"trainer.strategy={cfg.trainer.get('strategy')!r}: this process is one of "
                          f"WORLD_SIZE={world} started by {starter}; use trainer=ddp or trainer=fsdp (or a single task)")


def num_workers(cfg: Any) -> int:
    """``trainer.devices``, checked against the machine: one worker per GPU, or CPU processes."""
    import torch

    devices, accelerator = int(cfg.trainer.devices), cfg.trainer.get("accelerator", "auto")
    strategy = cfg.trainer.get("strategy")
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    if tasks > 1:  # each SLURM task would start its own separate DDP job on its node
        raise ConfigError(f"trainer.strategy={strategy} in a SLURM step of {tasks} tasks: this launcher starts the "
                          "workers of one node; use one task per job (submitit: nodes=1, tasks_per_node=1) or, "
                          "for several nodes, one task per node running torchrun (see the README)")
    if accelerator == "mps":
        raise ConfigError(f"trainer.accelerator='mps' with trainer.strategy={strategy}: MPS has no distributed "
                          "backend; use trainer.accelerator=cpu")
    uses_cuda = accelerator == "cuda" or (accelerator == "auto" and torch.cuda.is_available())
    if uses_cuda and devices > torch.cuda.device_count():
        raise ConfigError(f"trainer.devices={devices}: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s); use at most that many (or trainer.accelerator=cpu)")
    return devices


def launch(cfg: Any, work: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work(cfg)`` on ``trainer.devices`` local DDP workers; rank 0's result."""
    from hydra.core.hydra_config import HydraConfig

    from expkit.config import to_plain

    from expkit.runner import checkpoint_folder, run_dir

    nprocs = num_workers(cfg)
    hydra_cfg = HydraConfig.instance().cfg if HydraConfig.initialized() else None
    log.info("starting %d %s workers (rank 0 logs here)", nprocs, str(cfg.trainer.strategy).upper())
    results = run_workers(_worker, nprocs, (Importable(work), to_plain(cfg), plain_hydra(hydra_cfg)),
                          checkpoints=checkpoint_folder(cfg, run_dir()))
    return results[0]


class Importable:
    """``work`` in a form spawned workers can load. A module-level function travels by reference
    (the workers import it). Under a sweep launcher (joblib, submitit) the job's functions arrived
    pickled by value from the launcher's ``__main__``, which the workers cannot import: they travel
    the same way again, with cloudpickle (what those launchers use)."""

    def __init__(self, fn: Callable[[Any], dict[str, Any]]) -> None:
        module = sys.modules.get(fn.__module__)
        self.fn: Callable[[Any], dict[str, Any]] | None = None
        self.pickled: bytes | None = None
        if getattr(module, fn.__qualname__, None) is fn:
            self.fn = fn
        else:
            import cloudpickle

            self.pickled = cloudpickle.dumps(fn)

    def __call__(self, cfg: Any) -> dict[str, Any]:
        if self.fn is None:
            import cloudpickle

            self.fn = cloudpickle.loads(self.pickled)
        return self.fn(cfg)


def plain_hydra(hydra_cfg: Any) -> Any:
    """Hydra's runtime config for the workers (what ``run_dir()`` and logging read), with the
    launcher's and sweeper's nodes as plain data: their typed nodes need not pickle."""
    if hydra_cfg is None:
        return None
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    hydra_cfg = copy.deepcopy(hydra_cfg)
    with read_write(hydra_cfg.hydra), open_dict(hydra_cfg.hydra):
        for key in ("launcher", "sweeper"):
            hydra_cfg.hydra[key] = OmegaConf.to_container(hydra_cfg.hydra[key], resolve=False)
    return hydra_cfg


#: The signals the launcher passes on to the workers (torch's default list lacks SIGUSR1/2).
FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2"


def run_workers(fn: Callable[..., Any], nprocs: int, args: tuple = (),
                checkpoints: Path | None = None) -> dict[int, Any]:
    """``fn(*args)`` on ``nprocs`` local processes started by torch's elastic launcher.

    ``fn`` must be importable (a module-level function): workers are spawned.
    Returns {rank: return value}; raises ``WorkerFailed`` if any worker failed and
    ``Preempted`` if the launcher was stopped by a signal (naming a checkpoint in
    ``checkpoints`` only if every worker confirmed saving it, else the latest valid one).
    """
    import signal
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) not in multiprocessing.get_all_start_methods():
        # A joblib (loky) worker: spawned children would be told to use loky's start method,
        # which only exists in loky's own processes. This process is a worker: spawn from now on.
        multiprocessing.set_start_method("spawn", force=True)
    logs = tempfile.mkdtemp(prefix="expkit-ddp-")  # the launcher's per-rank error files; removed below
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nprocs, run_id=uuid.uuid4().hex,
        rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # torchrun --standalone: a store on a free port
        max_restarts=0, start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=logs),
        shutdown_timeout=SHUTDOWN_TIMEOUT_S, **_signals_option(LaunchConfig))
    quiet = logging.getLogger("torch.distributed.elastic")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its banner and failure dumps would bury our one line (workers log their own)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    os.environ.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", FORWARDED_SIGNALS)
    try:
        return elastic_launch(config, fn)(*args)
    except ChildFailedError as e:
        raise _as_worker_failed(e, logs, nprocs) from None
    except SignalException as e:
        # The launcher was signalled and passed the signal on; the workers have ended (saved).
        stop = stopped_by_signal(e.sigval.name, logs, nprocs, checkpoints)
        signals.hand_on(e.sigval, handlers.get(e.sigval))  # only now: submitit requeues the job there, and exits
        raise stop from None
    finally:
        for signum, handler in handlers.items():  # the launcher leaves its own handlers installed
            signal.signal(signum, handler)
        quiet.setLevel(level)
        shutil.rmtree(logs, ignore_errors=True)


def _signals_option(launch_config: type) -> dict[str, str]:
    """The launcher's signals to handle. Recent torch takes them from ``LaunchConfig.signals_to_handle``
    (default SIGTERM,SIGINT,SIGHUP,SIGQUIT) and overwrites the environment variable older torch read;
    without SIGUSR2 there, submitit's handler would requeue the job and exit before the workers saved."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(launch_config)}
    return {"signals_to_handle": FORWARDED_SIGNALS} if "signals_to_handle" in fields else {}


def stopped_by_signal(signal_name: str, logs: str, nprocs: int, checkpoints: Path | None) -> Exception:
    """What a signalled DDP job tells: the checkpoint every rank confirmed, or the latest valid one.

    A worker that stopped cleanly (``Preempted``) left its error file with exit status 75 and
    the checkpoint it saved; a worker that was killed, or stopped before training, left none.
    """
    from expkit.engine.preemption import Preempted

    reports = [_read_error_file(p) for p in Path(logs).glob("*/attempt_*/*/error.json")]
    saved = {m.split("ckpt_path=", 1)[1].split()[0] for m, code in reports if code == EXIT_PREEMPTED and "ckpt_path=" in m}
    if len(reports) == nprocs and all(code == EXIT_PREEMPTED for _, code in reports) and len(saved) == 1:
        return Preempted(signal_name, saved.pop())
    latest = latest_valid_checkpoint(checkpoints)
    if latest is None:
        return _stopped(signal_name, "no rank confirmed a checkpoint and there is no valid one "
                                        "to resume from: start again")
    return _stopped(signal_name, f"not every rank confirmed saving a checkpoint at the stop; "
                                    f"the latest valid one is {latest}: resume with ckpt_path={latest}", latest)


def _stopped(signal_name: str, detail: str, checkpoint: Path | None = None) -> Exception:
    """A ``Preempted`` (exit 75, status preempted) whose message says what really is on disk."""
    from expkit.engine.preemption import Preempted

    stop = Preempted(signal_name, str(checkpoint) if checkpoint else None)
    stop.args = (f"stopped by {signal_name}; {detail}",)
    return stop


def latest_valid_checkpoint(folder: Path | None) -> Path | None:
    """The checkpoint in ``folder`` with the most training steps among those that load (checksum included)."""
    from expkit.engine.checkpoint import CheckpointError, load

    best: tuple[int, Path] | None = None
    for path in sorted(Path(folder).glob("*.ckpt")) if folder is not None and Path(folder).is_dir() else []:
        try:
            step = int(load(path, mmap=True).get("loop", {}).get("global_step", 0))
        except CheckpointError:
            continue
        if best is None or step > best[0]:
            best = (step, path)
    return best[1] if best else None


def lost_peer(message: str) -> bool:
    """Does this error only say that another rank went away (so it is not the root cause)?"""
    return any(words in message for words in ("DistBackendError", "DistNetworkError", "Connection closed by peer",
                                               "Connection reset by peer", "Broken pipe", "remote worker crashing"))


def timed_out(message: str) -> bool:
    """Did this error come from a collective that waited ``collective_timeout_s`` for another rank?"""
    text = message.lower()
    return "timed out" in text or "timing out" in text


def _as_worker_failed(error: Any, logs: str, nprocs: int = 0) -> WorkerFailed:
    """The root cause: a rank that raised, preferred over ranks that only lost a peer or were stopped.

    The agent lists the workers that had failed when it looked; the rank that raised first
    may still have been exiting then (and was stopped by the agent afterwards). Its error
    file was written before it exited, so every rank's error file in ``logs`` is read too.
    """
    candidates: dict[int, tuple[str, int]] = {}  # rank -> (one-line message, exit code)
    for rank, failure in error.failures.items():
        candidates[rank] = (_message(failure.message) or f"exit code {failure.exitcode}", failure.exitcode)
    for path in Path(logs).glob("*/attempt_*/*/error.json"):
        rank, (message, code) = int(path.parent.name), _read_error_file(path)
        if message and (rank not in candidates or candidates[rank][1] < 0 or lost_peer(candidates[rank][0])):
            candidates[rank] = (message, code)

    def secondary(item: tuple[int, tuple[str, int]]) -> tuple[bool, bool, int]:
        rank, (message, code) = item
        return lost_peer(message), code < 0, rank

    waited = sorted(r for r, (message, _) in candidates.items() if timed_out(message))
    if waited and nprocs:  # the rank that stopped answering is the one nobody heard back from
        silent = [r for r in range(nprocs) if r not in waited]
        if silent:
            return WorkerFailed(f"DDP rank {', '.join(map(str, silent))} stopped answering: rank {waited[0]} waited "
                                f"{dist.collective_timeout_s():g} s for it in a collective and gave up "
                                f"(collective_timeout_s; its error: {candidates[waited[0]][0][:200]})")
    rank, (message, code) = min(candidates.items(), key=secondary)
    return WorkerFailed(f"DDP rank {rank} failed: {message}", exit_code=code if code > 0 else EXIT_FAILED)


def _message(message: Any) -> str:
    """An error file's message (a string, or a dict holding one) on one line."""
    if isinstance(message, dict):
        message = message.get("message", "")
    return " ".join(str(message).split())


def _read_error_file(path: Path) -> tuple[str, int]:
    """(message, exit code) from a worker's error file; the exit code is ours (see ``_worker``)."""
    try:
        data = json.loads(path.read_text())["message"]
        return _message(data), int(data.get("extraInfo", {}).get("exitcode", EXIT_FAILED))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", EXIT_FAILED


def _worker(work: Callable[[Any], dict[str, Any]], plain_cfg: dict[str, Any], hydra_cfg: Any) -> dict[str, Any]:
    """One DDP worker: adopt the parent's Hydra runtime, set up logging, run ``work``."""
    import torch.distributed as tdist
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from expkit import signals

    if hydra_cfg is not None:
        HydraConfig.instance().set_config(hydra_cfg)  # run_dir(), overrides and job name as in the parent
    configure_worker_logging(hydra_cfg)
    signals.runner_reports(True)  # the parent reports a stop; a worker's stop is its exit status
    dist.set_collective_timeout(plain_cfg.get("collective_timeout_s"))
    try:
        result = work(OmegaConf.create(plain_cfg))
    except Exception as e:  # noqa: BLE001 - becomes this process's exit code and the launcher's error file
        code = exit_code_for(e)
        if lost_peer(str(e)) or timed_out(str(e)):
            log.warning("rank %d stopped: %s", dist.rank(), " ".join(str(e).split())[:200])
        elif code is None:
            log.exception("rank %d failed", dist.rank())  # unexpected: show where, as a single process would
        _record_error(e, code or EXIT_FAILED)  # what the parent reports
        sys.exit(code or EXIT_FAILED)
    if tdist.is_initialized():
        tdist.destroy_process_group()
    return result


def _record_error(error: BaseException, exit_code: int) -> None:
    """Write the launcher's error file (its format, plus our exit code) before this worker exits."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    extra = {"py_callstack": traceback.format_exc(), "timestamp": str(int(time.time())), "exitcode": exit_code}
    Path(path).write_text(json.dumps({"message": {"message": f"{type(error).__name__}: {error}", "extraInfo": extra}}))


def configure_worker_logging(hydra_cfg: Any) -> None:
    """Rank 0 logs as the parent does (Hydra's job logging: console + the run's log file,
    opened for appending); the other ranks print warnings and errors to stderr only."""
    if dist.rank() == 0 and hydra_cfg is not None:
        from hydra.core.utils import configure_log

        configure_log(hydra_cfg.hydra.job_logging, hydra_cfg.hydra.verbose)
    else:
        quiet_other_ranks(dist.rank())
