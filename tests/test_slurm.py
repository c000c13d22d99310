"""``launcher=slurm`` on a real one-node SLURM cluster that the tests bring up (tests/slurm_cluster.py).

Every job goes through hydra-submitit-launcher, sbatch, srun and submitit's job runner, as on
a real cluster: a sweep gives one run directory per job with the plain runs' metrics; a job of
two tasks with ``trainer=ddp`` is one DDP job; a job requeued mid-run (``scontrol requeue``)
resumes from its last.ckpt and ends with the uninterrupted run's weights, bit for bit; a DDP
job signalled as SLURM does before its time limit (USR2) has saved last.ckpt before submitit
requeues it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import ROOT, assert_same_metrics, job_dir, job_dirs, read_json, train
from slurm_cluster import PARTITION, ClusterUnavailable, SlurmCluster

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
#: Each job: one CPU, no GPU, little memory (the node has REAL_MEMORY_MB).
LAUNCH = ("-m", "launcher=slurm", f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
          "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1")
RUN = ("data=digits", "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0", "logger=none",
       "trainer.num_threads=1")
#: Digits: 20 training steps per epoch. The interrupted runs stop at step 30 (mid epoch 1,
#: after epoch 0's last.ckpt), for long enough that the test's signal arrives there.
LONG_RUN = (*RUN, "trainer.max_epochs=3", "trainer.log_every_n_steps=10", "test=false")
STOP_STEP, HANG_S = 30, 4
WAIT_S = 240


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except ClusterUnavailable as e:
        pytest.skip(f"no SLURM cluster: {e}")
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


def job_env(cluster: SlurmCluster, root: Path) -> dict[str, str]:
    """The cluster's address, this checkout's expkit and the tests' components (sbatch passes them on)."""
    path = os.pathsep.join([str(ROOT / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**cluster.env(), "EXPKIT_ROOT": str(root), "PYTHONPATH": path}


def only_sweep(root: Path) -> Path:
    (sweep,) = (root / "outputs" / "train" / "multirun").iterdir()
    return sweep


def test_a_sweep_runs_one_slurm_job_per_point_with_the_plain_runs_metrics(cluster, tmp_path):
    train(*LAUNCH, *RUN, "seed=1,2", env=job_env(cluster, tmp_path / "slurm"), timeout=WAIT_S)
    train("-m", *RUN, "seed=1,2", env={"EXPKIT_ROOT": str(tmp_path / "plain")}, timeout=WAIT_S)
    sweep, plain = only_sweep(tmp_path / "slurm"), only_sweep(tmp_path / "plain")
    assert [d.name for d in job_dirs(sweep)] == [d.name for d in job_dirs(plain)] == ["0_seed=1", "1_seed=2"]
    tasks = sorted(p.name.split("_", 1)[1] for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert tasks == ["0", "1"]  # the logs of the two tasks of one SLURM job array
    for job, local in zip(job_dirs(sweep), job_dirs(plain)):
        assert read_json(job / "status.json")["status"] == "ok"
        assert_same_metrics(read_json(job / "metrics.json"), read_json(local / "metrics.json"))
    first, second = job_dirs(sweep)
    assert read_json(first / "metrics.json") != read_json(second / "metrics.json")  # two seeds


def test_two_tasks_of_a_job_are_the_ranks_of_one_ddp_run(cluster, tmp_path):
    # data.batch_size is the global batch: each of the 2 tasks takes 32 of the 64.
    train(*LAUNCH, "hydra.launcher.tasks_per_node=2", *RUN, "trainer=ddp",
          env=job_env(cluster, tmp_path / "slurm"), timeout=WAIT_S)
    train(*RUN, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'plain'}", timeout=WAIT_S)
    sweep = only_sweep(tmp_path / "slurm")
    (run,) = job_dirs(sweep)
    (job,) = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    assert sorted(p.name for p in job.glob("*_log.err")) == [f"{job.name}_0_log.err", f"{job.name}_1_log.err"]
    assert "2 ranks x 32" in (run / "train.log").read_text()
    assert_same_metrics(read_json(run / "metrics.json"), read_json(tmp_path / "plain" / "metrics.json"))


_submitted: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_launcher_left_behind() -> Any:
    """A test that fails while a launcher waits on its job stops that launcher too."""
    yield
    while _submitted:
        proc = _submitted.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def submit(cluster: SlurmCluster, root: Path, *overrides: str) -> subprocess.Popen:
    """A one-job sweep under launcher=slurm, in the background; it returns when the job has finished."""
    hang = ("+callbacks.hang._target_=user_components.HangAt", "+callbacks.hang.hook=on_train_batch_end",
            f"+callbacks.hang.marker={root / 'hang.marker'}", f"+callbacks.hang.seconds={HANG_S}",
            f"+callbacks.hang.step={STOP_STEP}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **job_env(cluster, root)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *LAUNCH, *LONG_RUN, *hang, *overrides],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _submitted.append(proc)
    return proc


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{what}: never happened (launcher exit {proc.returncode})\n{err[-4000:]}")
        time.sleep(0.1)


def interrupt(cluster: SlurmCluster, root: Path, proc: subprocess.Popen, *command: str) -> tuple[Path, Path]:
    """Wait until the job hangs at STOP_STEP (last.ckpt of epoch 0 is on disk), run ``command <job id>``,
    start the requeued job without SLURM's wait, and wait for the sweep to end; (run dir, job log dir)."""
    wait_for(lambda: (root / "hang.marker").exists(), proc, f"the job reaching step {STOP_STEP}")
    sweep = only_sweep(root)
    (job,) = [p for p in (sweep / ".submitit").iterdir() if p.is_dir()]
    run = job_dir(sweep, 0)
    assert run is not None
    # epoch 0's last.ckpt: written by the background writer, renamed into place when complete
    wait_for(lambda: (run / "checkpoints" / "last.ckpt").is_file(), proc, "epoch 0's last.ckpt")
    cluster.run(*command, job.name)
    pending_since, deadline = None, time.monotonic() + WAIT_S
    while proc.poll() is None:
        state = cluster.job_state(job.name)
        if state == "PENDING" and pending_since is None:
            pending_since = time.monotonic()
        # Requeued: SLURM holds it ~2 minutes. Start it now, but not within the second its old
        # instance ended in: slurmd would refuse it as a revoked credential.
        if pending_since is not None and time.monotonic() - pending_since > 2:
            cluster.run("scontrol", "update", f"JobId={job.name}", "StartTime=now", check=False)
            pending_since = float("inf")
        if state in ("FAILED", "CANCELLED", "NODE_FAIL", "BOOT_FAIL") or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"job {job.name}: {state or 'gone'}, the launcher still waiting\n{cluster.logs()}")
        time.sleep(0.2)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, f"{err[-4000:]}\n{cluster.logs()}"
    return run, job


def assert_resumed_exactly(run: Path, reference: Path) -> None:
    """Two attempts; the second resumed from the step the first stopped at; the uninterrupted weights."""
    status = read_json(run / "status.json")
    assert status["status"] == "ok" and status["attempt"] == 2, status
    log = (run / "train.log").read_text()
    assert f"resumed from {run / 'checkpoints' / 'last.ckpt'} at epoch 1, step {STOP_STEP}" in log, log[-3000:]
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    expected = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["loop"]["global_step"] == expected["loop"]["global_step"] == 60
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key  # bit for bit
    assert_same_metrics(read_json(run / "metrics.json"), read_json(reference / "metrics.json"))


def test_a_requeued_job_resumes_from_last_ckpt_with_the_uninterrupted_weights(cluster, tmp_path):
    proc = submit(cluster, tmp_path / "slurm")
    train(*LONG_RUN, f"hydra.run.dir={tmp_path / 'plain'}", timeout=WAIT_S)  # meanwhile, on the other core
    run, job = interrupt(cluster, tmp_path / "slurm", proc, "scontrol", "requeue")
    log = (job / f"{job.name}_0_log.err").read_text()
    assert f"SIGTERM received: saved {run / 'checkpoints' / 'last.ckpt'} at epoch 1, step {STOP_STEP}" in log
    assert_resumed_exactly(run, tmp_path / "plain")


@pytest.fixture(scope="module")
def plain_ddp_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plain-ddp")
    train(*LONG_RUN, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={directory}", timeout=WAIT_S)
    return directory


@pytest.mark.parametrize("ranks", [
    ("hydra.launcher.tasks_per_node=2",),  # SLURM starts the 2 ranks
    ("hydra.launcher.cpus_per_task=2", "trainer.devices=2"),  # the job's one task starts 2 DDP workers
], ids=["tasks", "workers"])
def test_a_ddp_job_signalled_before_its_time_limit_saves_before_submitit_requeues(cluster, tmp_path,
                                                                                  plain_ddp_run, ranks):
    # What SLURM does signal_delay_s before the limit: USR2 to every process of the job's steps.
    # Each rank is at a step of HANG_S seconds when it arrives: the save comes at its end.
    proc = submit(cluster, tmp_path, "trainer=ddp", *ranks)
    run, job = interrupt(cluster, tmp_path, proc, "scancel", "--signal=USR2")
    lines = (job / f"{job.name}_0_log.err").read_text().splitlines()
    saved = [i for i, line in enumerate(lines) if f"SIGUSR2 received: saved {run / 'checkpoints'}" in line]
    requeued = [i for i, line in enumerate(lines) if f"Requeued job {job.name}" in line]
    assert saved and requeued and saved[0] < requeued[0], "\n".join(lines[-40:])
    assert f"at epoch 1, step {STOP_STEP}" in lines[saved[0]]
    assert_resumed_exactly(run, plain_ddp_run)
