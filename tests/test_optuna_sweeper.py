"""expkit's Optuna sweeper end to end: real `python train.py -m hparams_search=digits_optuna`
searches with real Optuna, through the basic (in-process), joblib and submitit_local
launchers; pruning, a NaN trial, a killed and resumed search, and the study read back by
`optuna.load_study` in another Python process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import job_dir, read_json, read_scalars, train
from test_sweeps import hparams_view, kill_during_job_1, overrides_of, read_csv, sweep

pytestmark = pytest.mark.slow

#: A search that must prune: 3 epochs, one finished trial is enough for the median, prune from epoch 0.
#: The grid runs every (lr, model) once; the tiny learning rates learn nothing in an epoch.
PRUNING = ("hparams_search=digits_optuna", "hydra/sweeper/sampler=grid", "trainer.max_epochs=3",
           "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0",
           "optimizer.lr=choice(0.003,0.00001)", "model=choice(mlp,linear)", "data.batch_size=64",
           "print_config=false")


def load_study(sweep_dir: Path) -> list[dict[str, Any]]:
    """The study, as `optuna.load_study` sees it from a separate Python process."""
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    code = ("import json, sys, optuna\n"
            "study = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])\n"
            "print(json.dumps([{'number': t.number, 'state': t.state.name, 'params': t.params, 'value': t.value,\n"
            "                   'steps': sorted(t.intermediate_values), 'user_attrs': t.user_attrs}\n"
            "                  for t in study.trials]))\n")
    proc = subprocess.run([sys.executable, "-c", code, results["study_name"], results["storage"]],
                          capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


STATES = {"ok": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


def assert_search(sweep_dir: Path, n_trials: int, max_epochs: int = 3) -> list[dict[str, str]]:
    """Every trial is one job dir (its number), listed in summary.csv with the state Optuna has,
    its parameters, the epochs it trained and its last reported value; a pruned trial stopped
    where it was pruned, with last.ckpt and status pruned."""
    rows = read_csv(sweep_dir / "summary.csv")
    trials = load_study(sweep_dir)
    assert [r["job"] for r in rows] == [str(t["number"]) for t in trials] == [str(n) for n in range(n_trials)]
    for row, trial in zip(rows, trials):
        assert STATES[row["status"]] == trial["state"], row
        overrides = overrides_of(row["overrides"])
        assert {k: overrides[k] for k in trial["params"]} == {k: str(v) for k, v in trial["params"].items()}
        job = Path(row["run_dir"])
        assert read_json(job / "status.json")["status"] == row["status"]
        if row["status"] == "failed":
            continue
        epochs = int(float(row["trial/epochs"]))
        assert trial["steps"] == list(range(epochs))  # reported after every validation, step = epoch
        assert float(row["trial/last_value"]) == pytest.approx(float(row["val/acc"]))
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert len(read_scalars(job)["val/acc"]) == epochs  # the curve stops there
        if row["status"] == "pruned":  # at its last validation, when parallel trials finished in that order
            assert epochs <= max_epochs and trial["user_attrs"]["pruned_at_epoch"] == epochs - 1
            assert row["trial/pruned"] == "1.0"
            assert not any(k.startswith("test/") for k in read_json(job / "metrics.json"))  # no test for it
        else:
            assert epochs == max_epochs and row["trial/pruned"] == "0.0"
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = max((r for r in rows if r["status"] == "ok"), key=lambda r: float(r["val/acc"]))
    assert results["best_value"] == pytest.approx(float(best["val/acc"]))
    assert results["best_trial"] == int(best["job"])
    return rows


def test_pruning_search_in_process(tmp_path):
    proc = sweep(tmp_path, *PRUNING, "hydra.sweeper.n_trials=4")

    rows = assert_search(tmp_path, 4)
    statuses = [r["status"] for r in rows]
    assert "pruned" in statuses and "ok" in statuses, statuses
    assert "Optuna 5." in proc.stdout + proc.stderr and "pruned" in proc.stdout

    # TensorBoard's HParams tab: every trial, with its state, epochs and last value
    _, sessions = hparams_view(tmp_path)
    for row in rows:
        session = sessions[job_dir(tmp_path, int(row["job"])).name]
        assert session["metrics"]["trial/pruned"] == (1.0 if row["status"] == "pruned" else 0.0)
        assert session["metrics"]["trial/epochs"] == float(row["trial/epochs"])


def test_pruning_search_in_joblib_workers(tmp_path):
    # two trials at once: the first two have no finished trial to compare with, so six
    sweep(tmp_path, *PRUNING, "optimizer.lr=choice(0.003,0.00001,0.000003)", "launcher=joblib",
          "hydra.launcher.n_jobs=2", "hydra.sweeper.n_trials=6")

    rows = assert_search(tmp_path, 6)
    assert any(r["status"] == "pruned" and int(float(r["trial/epochs"])) < 3 for r in rows)  # stopped early
    sweep_pid = read_json(tmp_path / ".sweep_plan.json")["pid"]
    pids = {read_json(Path(r["run_dir"]) / "job.json")["pid"] for r in rows}
    assert sweep_pid not in pids  # the trials ran (and reported, and were pruned) in worker processes


def test_pruning_search_through_submitit_local(tmp_path):
    sweep(tmp_path, *PRUNING, "launcher=submitit_local", "hydra.launcher.timeout_min=3",
          "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1", timeout=240)

    rows = assert_search(tmp_path, 3)
    assert "pruned" in [r["status"] for r in rows]
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 3  # one submitit job per trial


def test_a_nan_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    # SGD at lr=1e30 turns the loss non-finite in its first steps: the engine stops that run.
    proc = sweep(tmp_path, "hparams_search=digits_optuna", "hydra/sweeper/sampler=grid", "optimizer=sgd",
                 "optimizer.lr=choice(1e30,0.05)", "data.batch_size=64", "model=mlp", "hydra.sweeper.n_trials=2",
                 "print_config=false", check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the search ran to its end; a failed job fails the sweep
    assert "1 of 2 sweep jobs failed" in proc.stderr

    rows = assert_search(tmp_path, 2, max_epochs=1)
    by_status = {r["status"]: float(overrides_of(r["overrides"])["optimizer.lr"]) for r in rows}
    assert by_status == {"failed": 1e30, "ok": 0.05}
    assert "non-finite" in next(r["error"] for r in rows if r["status"] == "failed")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_params"]["optimizer.lr"] == 0.05 and results["trials"]["fail"] == 1
    assert "1 ok, 1 failed" in proc.stdout


def test_a_killed_search_resumes_where_it_stopped(tmp_path):
    """SIGKILL the whole sweep during trial 1; the same command again finishes the search: trial 1
    is recorded as failed (killed) and its parameters run again as trial 2, then trial 3."""
    overrides = ["-m", "hparams_search=digits_optuna", "hydra/sweeper/sampler=grid", "hydra/sweeper/pruner=none",
                 "trainer.max_epochs=8", "~callbacks.early_stopping", "trainer.num_sanity_val_steps=0",
                 "optimizer.lr=choice(0.003,0.001)", "model=choice(mlp,linear)", "data.batch_size=64",
                 "hydra.sweeper.n_trials=3", "print_config=false", f"hydra.sweep.dir={tmp_path}"]
    kill_during_job_1(overrides, tmp_path)
    assert [t["state"] for t in load_study(tmp_path)] == ["COMPLETE", "RUNNING"]

    again = train(*overrides, check=False)  # the same command again
    # it finishes the search; the job the kill left behind stays crashed, so the sweep exits 1 (sweep_fail_exit)
    assert again.returncode == 1 and "1 of 4 sweep jobs failed or crashed" in again.stderr, again.stderr[-3000:]

    trials = load_study(tmp_path)
    assert [(t["number"], t["state"]) for t in trials] == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE"),
                                                          (3, "COMPLETE")]
    assert trials[1]["user_attrs"]["expkit_killed"] is True
    assert trials[2]["params"] == trials[1]["params"] and trials[2]["user_attrs"]["expkit_retry_of"] == 1
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 3  # nothing skipped, nothing lost
    rows = read_csv(tmp_path / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "crashed"), ("2", "ok"), ("3", "ok")]
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 3, "pruned": 0, "fail": 1, "running": 0}


def test_a_bad_search_space_is_one_line_and_exit_status_2(tmp_path):
    proc = train("-m", "hparams_search=digits_optuna", "optimizer.lr=tag(log, interval(0, 1))",
                 f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: hydra.sweeper.params.optimizer.lr=tag(log, interval(0, 1)): needs low < high and low > 0 on a log scale")
    assert not list(tmp_path.glob("[0-9]*"))  # no trial ran
