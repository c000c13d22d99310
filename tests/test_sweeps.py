"""Sweeps end to end: real Hydra sweepers and launchers, real `python train.py -m` runs,
the summary files they leave and the TensorBoard view of the sweep dir."""
from __future__ import annotations

import csv
import math
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FAST, ROOT, job_dir, job_dirs, read_json, train

pytestmark = pytest.mark.slow


def sweep(sweep_dir: Path, *overrides: str, **kwargs: Any):
    """``python train.py -m`` with small settings, unless ``overrides`` set the same key."""
    keys = {o.split("=", 1)[0] for o in overrides}
    fast = [o for o in FAST if o.split("=", 1)[0] not in keys]
    return train("-m", *fast, *overrides, f"hydra.sweep.dir={sweep_dir}", **kwargs)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def overrides_of(text: str) -> dict[str, str]:
    """``"a=1 b=x"`` (a summary's overrides or config column) -> ``{"a": "1", "b": "x"}``."""
    return dict(o.split("=", 1) for o in text.split())


def kill_during_job_1(overrides: list[str], sweep_dir: Path) -> None:
    """Start ``python train.py <overrides>`` and SIGKILL it (the whole sweep) once job 1 has started."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        def started() -> bool:  # job 1 saved its config (the task does, after the callback's job start)
            return sweep_dir.is_dir() and (job := job_dir(sweep_dir, 1)) is not None and (job / "config.yaml").exists()

        while not started() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep ended before job 1 could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def assert_complete(job_dir: Path) -> None:
    """What a finished job leaves: its config, results and checkpoints."""
    for name in ("config.yaml", "status.json", "metrics.json", "job.json", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt"):
        assert (job_dir / name).is_file(), f"{job_dir}: no {name}"
    assert list((job_dir).glob("events.out.tfevents.*"))
    assert read_json(job_dir / "status.json")["status"] == "ok"


def hparams_view(logdir: Path) -> tuple[Any, dict[str, Any]]:
    """What TensorBoard's HParams tab shows for ``tensorboard --logdir <logdir>``, through the
    plugin's own backend: the experiment (columns) and each session (run) with its values."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    tb_context = base_plugin.TBContext(
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)),
        logdir=str(logdir), multiplexer=multiplexer)
    backend = backend_context.Context(tb_context)
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, backend, "", api_pb2.GetExperimentRequest()).run()
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=1000, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    for info in experiment.hparam_infos:
        request.col_params.add(hparam=info.name)
    for info in experiment.metric_infos:
        request.col_params.add(metric=info.name)
    groups = list_session_groups.Handler(ctx, backend, "", request).run().session_groups
    sessions = {}
    for group in groups:
        for session in group.sessions:
            sessions[session.name] = {
                "hparams": {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                            for k, v in group.hparams.items()},
                "metrics": {m.name.tag: m.value for m in session.metric_values},
                "status": api_pb2.Status.Name(session.status),
            }
    return experiment, sessions


def test_grid_sweep_leaves_complete_jobs_summary_and_one_hparams_view(tmp_path):
    proc = sweep(tmp_path, "model=mlp,linear", "optimizer.lr=0.01,0.001")

    jobs = job_dirs(tmp_path)
    # each job's folder (its TensorBoard run name) says what it changes, not what all jobs share
    assert [job.name for job in jobs] == ["0_model=mlp,optimizer.lr=0.01", "1_model=mlp,optimizer.lr=0.001",
                                          "2_model=linear,optimizer.lr=0.01", "3_model=linear,optimizer.lr=0.001"]
    for job in jobs:
        assert_complete(job)
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    assert {(overrides_of(r["overrides"])["model"], overrides_of(r["overrides"])["optimizer.lr"]) for r in rows} == {
        (m, lr) for m in ("mlp", "linear") for lr in ("0.01", "0.001")}
    for row, job in zip(rows, jobs):
        metrics = read_json(job / "metrics.json")
        assert row["status"] == "ok" and row["error"] == ""
        assert Path(row["run_dir"]) == job.resolve()
        assert float(row["val/acc"]) == pytest.approx(metrics["val/acc"])
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert int(row["best_epoch"]) == metrics["best_epoch"] == 0
    assert not (tmp_path / "summary_by_config.csv").exists()  # no repeated seeds
    assert "Sweep summary (4 ok)" in proc.stdout
    assert "optimizer.lr" in proc.stdout and "linear" in proc.stdout

    # One TensorBoard view of the sweep dir: one session per job, every hyperparameter of every job.
    experiment, sessions = hparams_view(tmp_path)
    assert set(sessions) == {job.name for job in jobs}
    columns = {info.name for info in experiment.hparam_infos}
    assert [info.name for info in experiment.hparam_infos][:2] == ["model", "optimizer.lr"]  # what is swept: shown first
    # overridden keys, even outside the default hparams, and keys only some jobs have (MLP's)
    assert {"model", "optimizer.lr", "trainer.max_epochs", "trainer.num_sanity_val_steps",
            "model.hidden_sizes"} <= columns
    metric_tags = [info.name.tag for info in experiment.metric_infos]
    assert metric_tags[0] == "val/acc" and {"val/acc", "test/acc"} <= set(metric_tags)  # the optimized first
    assert not {"epoch", "lr"} & set(metric_tags)
    for row, job in zip(rows, jobs):
        session = sessions[job.name]
        model, lr = (overrides_of(row["overrides"])[k] for k in ("model", "optimizer.lr"))
        assert session["hparams"]["model"] == model
        assert session["hparams"]["optimizer.lr"] == pytest.approx(float(lr))
        assert session["hparams"]["trainer.num_sanity_val_steps"] == 0
        assert session["metrics"]["val/acc"] == pytest.approx(float(row["val/acc"]), abs=1e-6)
        assert session["metrics"]["test/acc"] == pytest.approx(float(row["test/acc"]), abs=1e-6)
        assert session["status"] == "STATUS_SUCCESS"


def test_killed_sweep_still_has_a_summary(tmp_path, capsys):
    """SIGKILL the sweep during job 1: job 0 ok, job 1 started but never reported, job 2 never started."""
    from expkit.sweep.__main__ import main as summarize

    kill_during_job_1(["-m", "trainer.max_epochs=1,500,1", "~callbacks.early_stopping",
                       "trainer.num_sanity_val_steps=0", f"hydra.sweep.dir={tmp_path}"], tmp_path)

    rows = read_csv(tmp_path / "summary.csv")  # as the last job start left it
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "running"), ("2", "pending")]
    assert overrides_of(rows[2]["overrides"])["trainer.max_epochs"] == "1"  # known from the sweep's plan
    assert float(rows[0]["val/acc"]) > 0

    assert summarize([str(tmp_path), "--finished"]) == 0
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "crashed", "pending"]
    assert rows[1]["error"].startswith("no final status.json")
    assert "1 crashed" in capsys.readouterr().out
    assert summarize([str(job_dirs(tmp_path)[0] / "checkpoints")]) == 2  # not a sweep: one line, exit 2


def test_optuna_search_survives_a_failing_trial(tmp_path):
    # TPE's startup trials are random draws from its seed; seed 3 draws both max_epochs values.
    proc = sweep(tmp_path, "hparams_search=digits_optuna", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.sampler.seed=3", "trainer.max_epochs=choice(1,-1)", check=False)
    assert proc.returncode == 1  # a trial failed

    rows = read_csv(tmp_path / "summary.csv")
    assert len(rows) == 3 and len(job_dirs(tmp_path)) == 3
    for row in rows:
        failing = overrides_of(row["overrides"])["trainer.max_epochs"] == "-1"
        assert row["status"] == ("failed" if failing else "ok")
        if failing:
            assert row["error"] == "trainer.max_epochs=-1: must be an integer >= 1"
        else:
            assert_complete(Path(row["run_dir"]))
    statuses = [r["status"] for r in rows]
    assert {"ok", "failed"} <= set(statuses), f"seed 3 no longer draws both values: {statuses}"
    # the failed trial scored -inf: the study went on and ranked it last
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optimizer.lr", "model", "data.batch_size", "trainer.max_epochs"}
    best = max((r for r in rows if r["status"] == "ok"), key=lambda r: float(r["val/acc"]))
    assert results["best_value"] == pytest.approx(float(best["val/acc"]))
    for key, value in results["best_params"].items():
        assert overrides_of(best["overrides"])[key] == str(value)
    assert f"Sweep summary ({statuses.count('ok')} ok, {statuses.count('failed')} failed)" in proc.stdout


def test_failing_jobs_and_repeated_seeds(tmp_path):
    # max_epochs=-1 fails the runner's config check in both its jobs; max_epochs=1 trains twice
    proc = sweep(tmp_path, "trainer.max_epochs=-1,1", "seed=1,2", check=False)
    assert proc.returncode == 1  # two jobs failed

    rows = read_csv(tmp_path / "summary.csv")
    assert [(overrides_of(r["overrides"])["trainer.max_epochs"], r["status"]) for r in rows] == [
        ("-1", "failed"), ("-1", "failed"), ("1", "ok"), ("1", "ok")]
    assert rows[0]["error"] == "trainer.max_epochs=-1: must be an integer >= 1"
    assert rows[0]["val/acc"] == "" and float(rows[2]["val/acc"]) > 0
    for job in job_dirs(tmp_path)[2:]:
        assert_complete(job)  # the jobs after the failures ran in full
    assert "2 failed" in proc.stdout and "must be an integer >= 1" in proc.stdout

    # mean and std over the seeds of each config (the overrides without the seed)
    by_config = {overrides_of(r["config"])["trainer.max_epochs"]: r
                 for r in read_csv(tmp_path / "summary_by_config.csv")}
    assert set(by_config) == {"-1", "1"}
    assert all("seed" not in overrides_of(r["config"]) for r in by_config.values())
    assert (by_config["-1"]["jobs"], by_config["-1"]["ok"], by_config["-1"]["val/acc_mean"]) == ("2", "0", "")
    stats = by_config["1"]
    values = [float(r["val/acc"]) for r in rows[2:]]
    assert (stats["jobs"], stats["ok"], stats["seeds"]) == ("2", "2", "1 2")
    assert float(stats["val/acc_mean"]) == pytest.approx(statistics.fmean(values))
    assert float(stats["val/acc_std"]) == pytest.approx(statistics.stdev(values))
    assert "Mean ± std over seeds per config" in proc.stdout

    # the failed jobs are in TensorBoard's HParams tab too, marked as failed
    _, sessions = hparams_view(tmp_path)
    assert [sessions[job.name]["status"] for job in job_dirs(tmp_path)] == [
        "STATUS_FAILURE", "STATUS_FAILURE", "STATUS_SUCCESS", "STATUS_SUCCESS"]
    assert sessions[job_dirs(tmp_path)[0].name]["hparams"]["trainer.max_epochs"] == -1


def test_joblib_runs_jobs_in_parallel_worker_processes(tmp_path):
    proc = sweep(tmp_path, "launcher=joblib", "hydra.launcher.n_jobs=2", "model=mlp,linear")

    assert "Joblib.Parallel(n_jobs=2," in proc.stdout + proc.stderr
    jobs = job_dirs(tmp_path)
    assert len(jobs) == 2
    for job in jobs:
        assert_complete(job)
    sweep_pid = read_json(tmp_path / ".sweep_plan.json")["pid"]
    assert sweep_pid not in {read_json(job / "job.json")["pid"] for job in jobs}  # ran in workers
    assert [r["status"] for r in read_csv(tmp_path / "summary.csv")] == ["ok", "ok"]


def test_submitit_local_runs_jobs_as_subprocesses(tmp_path):
    sweep(tmp_path, "launcher=submitit_local", "hydra.launcher.timeout_min=3", "model=mlp,linear", timeout=200)

    jobs = job_dirs(tmp_path)
    assert len(jobs) == 2
    for job in jobs:
        assert_complete(job)
        assert yaml.safe_load((job / "config.yaml").read_text())["ckpt_path"] == "auto"  # resume on requeue
    pids = {read_json(job / "job.json")["pid"] for job in jobs}
    assert len(pids) == 2 and read_json(tmp_path / ".sweep_plan.json")["pid"] not in pids
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2
    rows = read_csv(tmp_path / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(math.isfinite(float(r["val/acc"])) for r in rows)


def test_job_folder_names_stay_one_short_folder_inside_the_sweep():
    from expkit.sweep.run_names import MAX_CHARS, constant_keys, job_dir_name

    assert job_dir_name(3, "data.root=/data/x,model=cnn") == "3_data.root=_data_x,model=cnn"  # never a path
    assert job_dir_name(0, "") == "0"
    long = job_dir_name(12, ",".join(f"model.hidden_sizes{i}=[{i},{i}]" for i in range(10)))
    assert long.startswith("12_model.hidden_sizes0=") and long.endswith("~") and len(long) <= len("12_") + MAX_CHARS
    assert constant_keys(["model=mlp,cnn", "trainer.max_epochs=3", "optimizer.lr=range(1,3)", "+extra=1"]) == [
        "trainer.max_epochs", "extra"]
