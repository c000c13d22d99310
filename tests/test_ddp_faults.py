"""DDP under faults, real gloo process groups: a rank that stops answering fails the job in
``collective_timeout_s`` with one line naming it; a stop signal right after the workers
start says there is nothing to resume from instead of naming a checkpoint nobody saved."""
from __future__ import annotations

import signal

import pytest

from conftest import FAST, read_json, train
from fault_helpers import USER_CODE, start, stop_with, wait_for

pytestmark = pytest.mark.slow

DDP = (*FAST, "logger=none", "test=false", "trainer=ddp", "trainer.devices=2")


def test_a_rank_that_stops_answering_fails_the_job_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    proc = train(*DDP, f"hydra.run.dir={run_dir}", "collective_timeout_s=2",
                 "+callbacks.hang._target_=user_components.HangAt", "+callbacks.hang.hook=on_train_batch_end",
                 f"+callbacks.hang.marker={tmp_path / 'hung'}", "+callbacks.hang.rank=1", "+callbacks.hang.seconds=6",
                 env=USER_CODE, check=False, timeout=170)

    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "error: DDP rank 1 stopped answering: rank 0 waited 2 s for it in a collective" in last, last
    assert read_json(run_dir / "status.json")["status"] == "failed"


def test_a_signal_just_after_the_workers_start_names_no_checkpoint(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "building"
    proc = start("train.py", *DDP, f"hydra.run.dir={run_dir}", "model._target_=user_components.SlowModel",
                 f"+model.marker={marker}")
    wait_for(marker.exists, proc, "the workers' models")
    code, _, err = stop_with(proc, signal.SIGTERM)

    assert code == 75, err[-3000:]
    assert "Traceback" not in err
    status = read_json(run_dir / "status.json")
    assert status["status"] == "preempted" and status["checkpoint"] is None
    assert "start again" in status["error"] and "ckpt_path=last" not in status["error"], status["error"]


def test_expkit_torchrun_stopped_by_sigterm_exits_75_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    run_dir, marker = tmp_path / "run", tmp_path / "training"
    command = [sys.executable, "-m", "expkit.torchrun", "--standalone", "--nproc_per_node=2", str(ROOT / "train.py"),
               *DDP[:-1], f"hydra.run.dir={run_dir}", "+callbacks.hang._target_=user_components.HangAt",
               "+callbacks.hang.hook=on_train_batch_end", f"+callbacks.hang.marker={marker}", "+callbacks.hang.rank=0",
               "+callbacks.hang.seconds=2"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **USER_CODE}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(marker.exists, proc, "the first training step")
    code, _, err = stop_with(proc, signal.SIGTERM)

    assert code == 75, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM")
    status = read_json(run_dir / "status.json")
    assert status["status"] == "preempted" and status["checkpoint"].endswith("last.ckpt")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_signal_during_ddp_training_names_the_checkpoint_every_rank_confirmed(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "training"
    proc = start("train.py", *DDP, f"hydra.run.dir={run_dir}", "+callbacks.hang._target_=user_components.HangAt",
                 "+callbacks.hang.hook=on_train_batch_end", f"+callbacks.hang.marker={marker}",
                 "+callbacks.hang.rank=0", "+callbacks.hang.seconds=2")
    wait_for(marker.exists, proc, "the first training step")
    code, _, err = stop_with(proc, signal.SIGTERM)

    last = run_dir / "checkpoints" / "last.ckpt"
    assert code == 75, err[-3000:]
    assert "Traceback" not in err
    status = read_json(run_dir / "status.json")
    assert status["status"] == "preempted" and status["checkpoint"] == str(last), status
    assert f"resume with ckpt_path={last}" in status["error"]
    from expkit.engine.checkpoint import load

    assert load(last)["loop"]["global_step"] >= 1
