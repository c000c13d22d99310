"""A SLURM step of several tasks (``srun -n N``, submitit's ``tasks_per_node`` / ``nodes``):
each task is one rank of one job, as torch's ``env://`` expects it.

SLURM starts every task itself, so nothing spawns workers: the task's SLURM variables
become torch's (``SLURM_PROCID`` -> ``RANK``, ``SLURM_NTASKS`` -> ``WORLD_SIZE``,
``SLURM_LOCALID`` -> ``LOCAL_RANK``; the first node of the step hosts the store on a port
derived from the job id). From there on the run is a multi-process job like torchrun's:
``trainer=ddp`` trains on all tasks into one run directory, anything else is refused with
one line (the tasks would train duplicate copies).
"""
from __future__ import annotations

import os
import subprocess


def step_tasks() -> int:
    """Tasks in this SLURM step (1 outside SLURM)."""
    value = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or "1"
    return int(value) if value.isdigit() else 1


def first_node(nodelist: str) -> str:
    """The first host of a SLURM node list (``node[01-04],gpu7``): scontrol expands the ranges."""
    if "[" not in nodelist:
        return nodelist.split(",")[0]
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()[0]


def adopt_slurm_ranks() -> bool:
    """In a SLURM step of several tasks (and not under torchrun), set torch's rank variables
    from SLURM's; True if this process is now one rank of such a job."""
    tasks = step_tasks()
    if tasks <= 1 or "SLURM_PROCID" not in os.environ:
        return False
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun (or an earlier call) set them
        return "EXPKIT_SLURM_RANKS" in os.environ
    nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    job = os.environ.get("SLURM_JOB_ID", "0")
    os.environ.update({
        "RANK": os.environ["SLURM_PROCID"], "WORLD_SIZE": str(tasks),
        "LOCAL_RANK": os.environ.get("SLURM_LOCALID", "0"), "LOCAL_WORLD_SIZE": str(max(1, tasks // nodes)),
        "MASTER_ADDR": os.environ.get("MASTER_ADDR") or first_node(nodelist),
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(20000 + int(job) % 20000 if job.isdigit() else 29500),
        "EXPKIT_SLURM_RANKS": "1",
    })
    return True
