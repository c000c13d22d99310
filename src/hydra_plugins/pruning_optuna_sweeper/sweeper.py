"""``hydra/sweeper=expkit_optuna``: an Optuna search whose trials are Hydra jobs.

The sweep asks Optuna for a trial, launches it as one job through whichever Hydra
launcher is configured (in-process, joblib, submitit) and tells Optuna how it ended.
Up to ``n_jobs`` trials run at once, each started as soon as a slot frees (no batches).
Each job learns its trial from ``hydra.sweeper.trial`` and reports to the same study in
the same storage (``expkit.sweep.pruning``), where the pruner decides whether it goes on.
"""
from __future__ import annotations

import logging
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.pruning_optuna_sweeper.config import OptunaSweeperConf  # noqa: F401 - registers configs

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parallelism(config: DictConfig, n_jobs: int | None) -> int:
    """Trials at once: ``n_jobs``, else the launcher's own; always 1 in-process."""
    launcher = config.hydra.launcher
    if str(launcher.get("_target_", "")).endswith("BasicLauncher"):
        if n_jobs not in (None, 1):
            log.warning("hydra.sweeper.n_jobs=%s: the basic launcher runs jobs in this process, one at a time "
                        "(use launcher=joblib or launcher=submitit_local for parallel trials)", n_jobs)
        return 1
    if n_jobs is None:
        n_jobs = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
    if n_jobs == -1:
        import os

        n_jobs = os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs < 1:
        from expkit.errors import ConfigError

        raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs}: must be an integer >= 1 (or null)")
    return n_jobs


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: Any, study_name: str | None, storage: str | None,
                 n_trials: int, n_jobs: int | None, params: dict[str, Any] | None, trial: int | None = None) -> None:
        self.sampler_cfg, self.pruner_cfg = sampler, pruner
        self.direction, self.study_name, self.storage = direction, study_name or "expkit", storage
        self.n_trials, self.n_jobs, self.params = n_trials, n_jobs, params
        self.exhausted = False  # the grid sampler ran every point

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # ---- building the study ---------------------------------------------------------------------
    def _objectives(self) -> list[str]:
        metric = self.config.get("optimized_metric", "val/acc")
        return [str(m) for m in metric] if OmegaConf.is_list(metric) else [str(metric)]

    def _sampler(self, space: Any) -> Any:
        from hydra.utils import instantiate

        if str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler"):
            return instantiate(self.sampler_cfg, search_space=space.grid())
        return instantiate(self.sampler_cfg)

    def _open_study(self, space: Any, url: str, directions: list[str]) -> Any:
        import optuna
        from hydra.utils import instantiate

        from expkit.errors import ConfigError
        from expkit.sweep.study import open_storage

        try:
            return optuna.create_study(study_name=self.study_name, storage=open_storage(url),
                                       sampler=self._sampler(space), pruner=instantiate(self.pruner_cfg),
                                       directions=directions, load_if_exists=True)
        except ValueError as e:  # e.g. an existing study with other directions
            raise ConfigError(f"hydra.sweeper.study_name={self.study_name} in {url}: {' '.join(str(e).split())}")

    # ---- one trial --------------------------------------------------------------------------------
    def _job_overrides(self, trial: Any, space: Any, url: str) -> list[str]:
        return space.overrides(trial.params) + [
            f"hydra.sweeper.trial={trial.number}", f"hydra.sweeper.storage={_quote(url)}",
            f"hydra.sweeper.study_name={_quote(self.study_name)}"]

    def _launch(self, overrides: list[str], number: int) -> JobReturn:
        return self.launcher.launch([overrides], initial_job_idx=number)[0]

    def _tell(self, study: Any, trial: Any, outcome: JobReturn | BaseException) -> str:
        """Record how the trial ended: failed (an error, or a non-finite value), pruned, or its value."""
        from optuna.trial import TrialState

        from expkit.sweep.study import PRUNED_ATTR, is_finite

        value: Any = None
        if isinstance(outcome, BaseException):
            log.error("trial %d: its job could not run: %s", trial.number, outcome)
        elif outcome.status == JobStatus.FAILED:
            log.error("trial %d failed: %s", trial.number, outcome._return_value)
        else:
            value = outcome.return_value
            value = [float(v) for v in value] if isinstance(value, (list, tuple)) else value
        if PRUNED_ATTR in study._storage.get_trial(trial._trial_id).user_attrs:
            return self._told(study, trial, "pruned", state=TrialState.PRUNED)
        if value is None or not is_finite(value):
            if value is not None:
                log.warning("trial %d returned %s: recorded as failed", trial.number, value)
            return self._told(study, trial, "failed", state=TrialState.FAIL)
        return self._told(study, trial, "ok", values=value if isinstance(value, list) else [float(value)])

    def _told(self, study: Any, trial: Any, outcome: str, **how: Any) -> str:
        """``study.tell``; the grid sampler asks to stop the study once every point ran (Optuna
        stores the trial first): the search ends there."""
        try:
            study.tell(trial, **how)
        except RuntimeError as e:
            if "Study.stop" not in str(e):
                raise
            if not self.exhausted:
                log.info("every point of the grid has run: the search ends")
            self.exhausted = True
        self._write_results(study, quiet=True)  # after every trial: a killed search keeps its results
        return outcome

    # ---- the search ----------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        from expkit.errors import InputError

        try:
            self._sweep(arguments)
        except InputError as e:  # bad input: one line, exit status 2, as for a single run
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    def _sweep(self, arguments: list[str]) -> None:
        from expkit.sweep import search_space, study as studies

        space = search_space.parse(OmegaConf.to_container(self.params, resolve=False) if self.params else None,
                                   arguments)
        objectives = self._objectives()
        directions = studies.directions(OmegaConf.to_container(self.direction) if OmegaConf.is_list(self.direction)
                                        else self.direction, self.config.get("optimized_mode"), len(objectives))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        url = studies.storage_url(self.storage, self.sweep_dir)
        study = self._open_study(space, url, directions)
        self.url, self.directions = url, directions
        self._write_results(study, quiet=True)
        studies.recover_killed(study)
        target = studies.plan_target(study, self.n_trials)
        _write_plan_count(self.sweep_dir, target)
        parallel = _parallelism(self.config, self.n_jobs)
        log.info("Optuna %s: study %s in %s, %s, %d trial(s) to run, %d at once", _optuna_version(),
                 self.study_name, url, "/".join(directions), target - studies.finished_count(study), parallel)
        if parallel == 1:
            self._run_in_turn(study, space, url, target)
        else:
            self._run_parallel(study, space, url, target, parallel)
        self._write_results(study)

    def _remaining(self, study: Any, target: int, running: int) -> int:
        from expkit.sweep.study import finished_count

        return 0 if self.exhausted else target - finished_count(study) - running

    def _run_in_turn(self, study: Any, space: Any, url: str, target: int) -> None:
        """One trial after another, in this thread (the basic launcher runs jobs in-process)."""
        while self._remaining(study, target, 0) > 0:
            trial = study.ask(space.distributions)
            try:
                outcome: JobReturn | BaseException = self._launch(self._job_overrides(trial, space, url), trial.number)
            except Exception as e:  # noqa: BLE001 - one trial's launch error must not end the search
                outcome = e
            self._tell(study, trial, outcome)

    def _run_parallel(self, study: Any, space: Any, url: str, target: int, parallel: int) -> None:
        """Up to ``parallel`` trials in flight; a new one starts whenever one ends. Only this
        thread talks to the study; the pool's threads just wait on the launcher."""
        running: dict[Future, Any] = {}
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="trial") as pool:
            while True:
                while len(running) < parallel and self._remaining(study, target, len(running)) > 0:
                    trial = study.ask(space.distributions)
                    running[pool.submit(self._launch, self._job_overrides(trial, space, url), trial.number)] = trial
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    trial = running.pop(future)
                    error = future.exception()
                    self._tell(study, trial, error if error is not None else future.result())

    def _write_results(self, study: Any, quiet: bool = False) -> None:
        import yaml

        from expkit.files import write_text_atomic
        from expkit.sweep.study import load_hint, results

        url = self.url
        out = results(study, url, self.directions)
        write_text_atomic(self.sweep_dir / RESULTS_FILE, yaml.safe_dump(out, sort_keys=False))
        if quiet:
            return
        if "best_trials" in out:
            best = f"Pareto front: trials {[t['number'] for t in out['best_trials']]}"
        else:
            best = f"best {out['best_params']} = {out['best_value']}"
        log.info("%s (%s); open the study with %s", best, self.sweep_dir / RESULTS_FILE,
                 load_hint(study.study_name, url))


def _optuna_version() -> str:
    import optuna

    return optuna.__version__


def _write_plan_count(sweep_dir: Path, target: int) -> None:
    """Tell the sweep summary how many trials to expect (it lists the missing ones as pending)."""
    from expkit.files import write_json_atomic
    from expkit.sweep import summary

    path = sweep_dir / summary.PLAN_FILE
    plan = summary.read_json(path) or {}
    plan["count"] = target
    write_json_atomic(path, plan)


__all__ = ["OptunaSweeper"]
