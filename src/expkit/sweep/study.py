"""Where an Optuna search lives: its storage, its study, and how a killed search resumes.

Every process of a search (the sweep, and each trial wherever its launcher runs it) opens
the same study by name in the same storage, so trials and their jobs meet there.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from expkit.errors import ConfigError

log = logging.getLogger(__name__)

#: Default storage file, in the sweep directory.
DEFAULT_DB = "optuna.db"
JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
#: Study attribute: how many finished trials the latest sweep aimed for (resume goes on to it).
TARGET_ATTR = "expkit_target_trials"
#: Trial attributes: left running by a killed sweep; epoch a trial was pruned at.
KILLED_ATTR = "expkit_killed"
PRUNED_ATTR = "pruned_at_epoch"


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """``null``: SQLite in the sweep directory; a path ending in .journal/.log: Optuna's
    journal file (safer on network file systems); anything with ``://``: an RDB URL."""
    if storage is None or str(storage).strip() == "":
        return f"sqlite:///{(Path(sweep_dir) / DEFAULT_DB).resolve()}"
    text = str(storage)
    if "://" in text or text.endswith(JOURNAL_SUFFIXES):
        return text
    raise ConfigError(f"hydra.sweeper.storage={text}: not a storage; use null (SQLite in the sweep directory), "
                      f"an RDB URL such as sqlite:///optuna.db, or a journal file path ending in .journal")


def open_storage(url: str) -> Any:
    """The storage object Optuna wants for ``url`` (journal file paths need wrapping)."""
    if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    return url


def load_hint(study_name: str, url: str) -> str:
    """The Python line that opens the study from another process."""
    if url.endswith(JOURNAL_SUFFIXES) and "://" not in url:
        storage = f"optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend({url!r}))"
    else:
        storage = repr(url)
    return f"optuna.load_study(study_name={study_name!r}, storage={storage})"


def directions(direction: Any, optimized_mode: Any, n_objectives: int) -> list[str]:
    """``hydra.sweeper.direction`` (null: follow ``optimized_mode``), one per objective."""
    modes = {"max": "maximize", "min": "minimize"}
    if direction is None:
        if n_objectives == 1 and optimized_mode in modes:
            return [modes[optimized_mode]]
        raise ConfigError(f"hydra.sweeper.direction=null: with {n_objectives} objectives set it to a list of "
                          f"{n_objectives} of maximize|minimize")
    given = [direction] if isinstance(direction, str) else [str(d) for d in direction]
    bad = [d for d in given if d not in ("maximize", "minimize")]
    if bad or len(given) != n_objectives:
        raise ConfigError(f"hydra.sweeper.direction={direction}: needs {n_objectives} of maximize|minimize "
                          f"(one per optimized_metric)")
    if n_objectives == 1 and optimized_mode in modes and modes[optimized_mode] != given[0]:
        raise ConfigError(f"hydra.sweeper.direction={given[0]}: disagrees with optimized_mode={optimized_mode} "
                          f"(use {modes[optimized_mode]}, or null to follow optimized_mode)")
    return given


def recover_killed(study: Any) -> int:
    """Trials a killed sweep left running become failed (marked killed) and their
    parameters are queued again, so the search skips none of them. Returns how many."""
    from optuna.trial import TrialState

    storage = study._storage
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, KILLED_ATTR, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(dict(trial.params), user_attrs={"expkit_retry_of": trial.number})
        log.warning("trial %d was left running by a killed sweep: recorded as failed, its parameters queued again",
                    trial.number)
    return len(stale)


def finished_count(study: Any) -> int:
    """Trials that ran to an end (complete, pruned, failed); killed ones do not count."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return sum(not t.user_attrs.get(KILLED_ATTR) for t in done)


def plan_target(study: Any, n_trials: int) -> int:
    """How many finished trials this sweep aims for: an interrupted search resumes to its
    old target; a finished one gets ``n_trials`` more."""
    finished = finished_count(study)
    previous = study.user_attrs.get(TARGET_ATTR)
    if isinstance(previous, int) and finished < previous:
        log.info("resuming study %s: %d of %d trials finished", study.study_name, finished, previous)
        return previous
    target = finished + n_trials
    study.set_user_attr(TARGET_ATTR, target)
    if finished:
        log.info("study %s has %d finished trials: running %d more", study.study_name, finished, n_trials)
    return target


def is_finite(value: Any) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def results(study: Any, url: str, directions_: Sequence[str]) -> dict[str, Any]:
    """``optimization_results.yaml``: best parameters and value (Pareto front for several
    objectives), trial counts per state, and where to open the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials)
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    out: dict[str, Any] = {"name": "optuna", "study_name": study.study_name, "storage": url,
                           "direction": list(directions_) if len(directions_) > 1 else directions_[0],
                           "n_trials": len(trials), "trials": counts}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        out.update(best_params=None, best_value=None)
    elif len(directions_) == 1:
        best = study.best_trial
        out.update(best_trial=best.number, best_params=dict(best.params), best_value=float(best.value))
    else:
        out["best_trials"] = [{"number": t.number, "params": dict(t.params), "values": [float(v) for v in t.values]}
                              for t in study.best_trials]
    return out
