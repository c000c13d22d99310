"""How many intra-op threads a process takes when ``trainer.num_threads`` is null.

Several ranks on one machine each taking every core oversubscribe it badly (on two
cores, two DDP ranks ran 6-8x slower than with one thread each). So a process takes
the cores it was given (its CPU affinity, capped by SLURM's ``cpus_per_task``) divided by
the ranks that share them (``LOCAL_WORLD_SIZE``, set by torchrun and expkit's launcher),
and never more than the machine has. ``OMP_NUM_THREADS``, when set, is respected as it
is (torchrun sets it to 1 unless you set it). One process alone keeps torch's default.
"""
from __future__ import annotations

import os


def cores_given() -> int:
    """Cores this process may run on: its affinity, capped by the SLURM task's allocation."""
    machine = os.cpu_count() or 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else machine
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if per_task.isdigit() and int(per_task) > 0:
        cores = min(cores, int(per_task))
    return max(1, min(cores, machine))


def default_threads() -> tuple[int | None, str]:
    """(threads, why) for this process; threads None: leave torch's default."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None, f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    sharing = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if "SLURM_CPUS_PER_TASK" in os.environ and "TORCHELASTIC_RUN_ID" not in os.environ:
        sharing = 1  # each SLURM task is one rank: cpus_per_task are its own
    if sharing <= 1 and "SLURM_CPUS_PER_TASK" not in os.environ:
        return None, "torch's default"
    cores = cores_given()
    return max(1, cores // max(sharing, 1)), f"{cores} core(s) / {max(sharing, 1)} rank(s) on this machine"
