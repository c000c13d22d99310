"""Hydra callback that keeps ``<sweep dir>/summary.csv`` up to date during a multirun.

Registered in ``conf/hydra/default.yaml``. ``on_job_start``/``on_job_end`` run where
the job runs (the main process for the basic launcher, a worker for joblib, a
cluster node for submitit), so everything goes through files in the sweep dir;
``on_multirun_end`` runs in the main process and prints the tables.
"""
from __future__ import annotations

import atexit
import copy
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from expkit.files import write_json_atomic
from expkit.sweep import summary

log = logging.getLogger(__name__)


def _is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def planned_jobs(config: DictConfig) -> dict[str, Any]:
    """What the sweeper will launch, so jobs not started yet show as pending: the job
    overrides for Hydra's basic sweeper, the trial count for Optuna, else nothing."""
    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    try:
        if target.endswith("BasicSweeper"):
            from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
            from hydra.core.override_parser.overrides_parser import OverridesParser

            params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
            arguments = params + list(config.hydra.overrides.task)
            batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
            return {"jobs": batches[0]}
        if isinstance(sweeper.get("n_trials"), int):
            return {"count": sweeper.n_trials}
    except Exception as e:  # noqa: BLE001 - e.g. glob() sweeps need the config loader; the plan is optional
        log.debug("no sweep plan: %s", e)
    return {}


def _record_failed_session(config: DictConfig) -> None:
    """Show a failed job in TensorBoard's HParams tab too (as failed), when it logs there."""
    if not str(OmegaConf.select(config, "logger._target_", default="")).endswith("TensorBoardLogger"):
        return
    try:
        from expkit.config import hparams
        from expkit.sweep.tensorboard import record_failed_session

        task_cfg = copy.deepcopy(config)
        with open_dict(task_cfg):
            del task_cfg["hydra"]  # what the task saw
        record_failed_session(Path(task_cfg.logger.save_dir), hparams(task_cfg))
    except Exception as e:  # noqa: BLE001 - the summary matters more than this extra
        log.warning("could not record the failed job in TensorBoard: %s", e)


#: Written into the summary for jobs a sweep that ended early left unfinished.
STOPPED = "the sweep ended before this job finished (stopped by a signal or an error)"


def _write_sweep_experiment(config: DictConfig, sweep_dir: Path, swept: list[str]) -> None:
    """TensorBoard's HParams columns for the whole sweep, ``swept`` keys first (see ``expkit.sweep.tensorboard``)."""
    if not str(OmegaConf.select(config, "logger._target_", default="")).endswith("TensorBoardLogger"):
        return
    try:
        from expkit.sweep.tensorboard import write_sweep_experiment

        write_sweep_experiment(sweep_dir, swept=swept)
    except Exception as e:  # noqa: BLE001 - the summary matters more than this extra
        log.warning("could not write the sweep's TensorBoard HParams columns: %s", e)


class SweepSummary(Callback):
    """Writes ``job.json`` into each job dir and rebuilds the sweep's summary files.

    ``fail_exit``: the sweep exits with status 1 when any job failed or crashed
    (top-level ``sweep_fail_exit``; false keeps 0).
    """

    def __init__(self, fail_exit: bool = True) -> None:
        self.fail_exit = fail_exit
        self._unfinished: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        plan = {**planned_jobs(config), "host": socket.gethostname(), "pid": os.getpid()}  # the sweep's own process
        write_json_atomic(sweep_dir / summary.PLAN_FILE, plan)
        summary.update(sweep_dir, finished=False)
        self._unfinished = sweep_dir
        atexit.register(self._finish_stopped_sweep)  # a signal or an aborting error skips on_multirun_end

    def _finish_stopped_sweep(self) -> None:
        """At exit of a sweep that did not reach its end: a final summary, unfinished jobs marked."""
        if self._unfinished is None:
            return
        sweep_dir, self._unfinished = self._unfinished, None
        try:
            summary.update(sweep_dir, finished=True, stopped=STOPPED)
            if any(sweep_dir.glob(f"*/{summary.JOB_FILE}")):  # no job started (a bad option): its line stays the last
                print(f"sweep stopped early; summary: {sweep_dir / summary.SUMMARY_FILE}", file=sys.stderr, flush=True)
        except OSError as e:
            print(f"sweep stopped early; could not write its summary: {e}", file=sys.stderr, flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        write_json_atomic(job_dir / summary.JOB_FILE, {
            "num": config.hydra.job.num,
            "overrides": list(config.hydra.overrides.task),
            "host": socket.gethostname(),  # which machine and process ran it (joblib, SLURM)
            "pid": os.getpid(),
        })
        summary.update(Path(config.hydra.sweep.dir), finished=False)  # this job: pending -> running

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        status_path = job_dir / summary.STATUS_FILE
        reported = (summary.read_json(status_path) or {}).get("status") not in (None, "running")
        if job_return.status == JobStatus.FAILED and not reported:
            # The task raised past the runner (it records its own failures): record it here.
            error = " ".join(str(job_return._return_value).split()) or type(job_return._return_value).__name__
            write_json_atomic(status_path, {"status": "failed", "error": error,
                                      "overrides": list(config.hydra.overrides.task)})
        if (summary.read_json(status_path) or {}).get("status") == "failed":
            _record_failed_session(config)
        summary.update(Path(config.hydra.sweep.dir), finished=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        self._unfinished = None
        rows = summary.update(sweep_dir, finished=True)
        _write_sweep_experiment(config, sweep_dir, summary.varying_keys(rows))
        # stdout, not the log: with the basic launcher the log file handler still points
        # into the last job's directory.
        print(summary.report(rows, sweep_dir), file=sys.stdout, flush=True)
        failed = summary.failed_jobs(rows)
        if failed and self.fail_exit:
            print(f"error: {len(failed)} of {len(rows)} sweep jobs failed or crashed (see {sweep_dir / summary.SUMMARY_FILE}; "
                  "sweep_fail_exit=false exits 0 anyway)", file=sys.stderr, flush=True)
            sys.exit(1)  # raising here would only make Hydra warn
