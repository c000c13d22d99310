"""Thin helpers over ``torch.distributed`` that are no-ops in a single process."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as tdist


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_distributed() else int(os.environ.get("RANK", 0))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_rank_zero() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True inside a worker started by torch's elastic launcher (torchrun)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def torchrun_world_size() -> int:
    """The number of processes torchrun started (1 outside torchrun); known before any process group."""
    return int(os.environ.get("WORLD_SIZE", "1")) if launched_by_torchrun() else 1


def default_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


_env_store: tdist.Store | None = None


def env_store(timeout_s: float = 300.0) -> tdist.Store:
    """The key-value store of this job's rendezvous (torchrun's agent store, or one rank 0 hosts).

    Created once per process and reused by ``init_from_env``, so ranks can agree on
    things (the run directory) before the process group exists, and a store that
    rank 0 hosts is never started twice on ``MASTER_PORT``.
    """
    global _env_store
    if _env_store is None:
        store, _, _ = next(tdist.rendezvous("env://", timeout=datetime.timedelta(seconds=timeout_s)))
        _env_store = store
    return _env_store


#: Seconds a collective waits for the other ranks before failing: a rank that stopped
#: answering ends the job in minutes, not torch's hours. ``collective_timeout_s`` in the config.
DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0
TIMEOUT_ENV = "EXPKIT_COLLECTIVE_TIMEOUT_S"  # so workers a launcher starts get the same


def set_collective_timeout(seconds: float | None) -> None:
    """Use ``seconds`` (None: the default) for the process groups this process and its workers create."""
    if seconds is not None:
        if not seconds > 0:
            from expkit.errors import ConfigError

            raise ConfigError(f"collective_timeout_s={seconds}: must be a number of seconds > 0")
        os.environ[TIMEOUT_ENV] = str(float(seconds))


def collective_timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_S))


def init_from_env(device: torch.device, strategy: str = "ddp", timeout_s: float | None = None) -> None:
    """Join the process group torchrun / elastic_launch described in the environment;
    collectives fail after ``timeout_s`` (default: ``collective_timeout_s()``)."""
    if is_distributed():
        return
    timeout_s = collective_timeout_s() if timeout_s is None else timeout_s
    if not launched_by_torchrun():
        raise RuntimeError(
            f"trainer.strategy={strategy} needs workers started by torch's launcher: use "
            f"`python train.py trainer={strategy} trainer.devices=N` or "
            f"`torchrun --nproc_per_node=N train.py trainer={strategy}`")
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())
    timeout = datetime.timedelta(seconds=timeout_s)
    if _env_store is None:
        tdist.init_process_group(default_backend(device), timeout=timeout)
    else:
        _env_store.set_timeout(timeout)
        # The agent's store outlives a restart of the workers (torchrun --max-restarts): each attempt
        # keeps its own keys, or the new group would find the dead workers' addresses.
        prefix = f"default_pg/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        tdist.init_process_group(default_backend(device), store=tdist.PrefixStore(prefix, _env_store),
                                 rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                 timeout=timeout)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    tensor = tensor.clone()
    if tdist.get_backend() == "nccl" and tensor.device.type != "cuda":
        tensor = tensor.cuda()
    tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return tensor


def all_reduce_max(value: float) -> float:
    """Max of a host number over ranks (used to agree on stop / preemption flags)."""
    if not is_distributed():
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(tensor, op=tdist.ReduceOp.MAX)
    return float(tensor.item())


def broadcast_object(obj):
    if not is_distributed():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        tdist.barrier()
