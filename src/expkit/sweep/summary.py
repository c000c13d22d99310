"""A sweep's results side by side, read back from its job directories.

Every job leaves ``job.json`` (written when it starts: number and overrides),
``status.json`` (ok / failed and the error's first line) and, when it succeeded,
``metrics.json``. The summary is rebuilt from those files each time, so it is
right whichever process writes it (joblib workers, SLURM nodes) and whenever the
sweep stops. No Hydra here: this module only reads and writes files.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from expkit.files import write_text_atomic

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
PLAN_FILE = ".sweep_plan.json"
SUMMARY_FILE = "summary.csv"
BY_CONFIG_FILE = "summary_by_config.csv"
LOCK_FILE = ".summary.lock"

#: Override keys that repeat a config rather than change it.
SEED_KEYS = ("seed", "+seed", "++seed")
#: Error shown for a job that started but left no status.json when the sweep ended.
NO_STATUS = "no final status.json: the job's process ended without reporting (killed, out of memory or timed out)"
#: Statuses of jobs that did not succeed: a sweep with any of them exits 1 (``sweep_fail_exit``).
FAILED_STATUSES = ("failed", "crashed")


@dataclass
class JobRow:
    """One job of the sweep, as its directory tells it."""

    job: str
    status: str  # ok | pruned | failed | running | crashed | pending | preempted | interrupted | stopped | cancelled
    overrides: list[str]
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: Any = None
    run_dir: str = ""

    def override_map(self) -> dict[str, str]:
        return dict(_split_override(o) for o in self.overrides)


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """One writer at a time (parallel jobs finish together); a file system without
    ``flock`` (some network mounts) still gets atomic, if unordered, writes."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(sweep_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        try:
            yield
        finally:
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            except OSError:
                pass


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Directories under the sweep holding a job (any ``hydra.sweep.subdir`` layout)."""
    found = []
    for directory, subdirs, files in os.walk(sweep_dir):
        if JOB_FILE in files or STATUS_FILE in files:
            found.append(Path(directory))
            subdirs.clear()  # a job's checkpoints and event files hold no other jobs
        else:
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
    return found


def read_job(directory: Path, sweep_dir: Path, finished: bool, stopped: str | None = None) -> JobRow:
    """``finished``: the sweep is over, so a job without ``status.json`` crashed; ``stopped``:
    why the sweep ended early (then an unfinished job was stopped with it)."""
    info = read_json(directory / JOB_FILE) or {}
    status = read_json(directory / STATUS_FILE)
    metrics = dict(read_json(directory / METRICS_FILE) or {})
    overrides = info.get("overrides") or (status or {}).get("overrides") or []
    number = info.get("num", directory.relative_to(sweep_dir).as_posix())
    row = JobRow(job=str(number), status="", overrides=[str(o) for o in overrides],
                 best_epoch=metrics.pop("best_epoch", None), metrics=metrics, run_dir=str(directory.resolve()))
    if status is None or status.get("status") == "running":  # a run writes "running" when it starts
        row.status, row.error = ("crashed", NO_STATUS) if finished else ("running", "")
    else:
        row.status, row.error = str(status.get("status", "unknown")), str(status.get("error") or "")
    if stopped is not None and row.status in ("running", "crashed"):
        row.status, row.error = "stopped", stopped
    return row


def _job_sort_key(row: JobRow) -> tuple[int, int | str]:
    return (0, int(row.job)) if row.job.isdigit() else (1, row.job)


def collect(sweep_dir: Path, finished: bool, stopped: str | None = None) -> list[JobRow]:
    """Every job of the sweep: started ones from their directories, the rest as pending
    (``cancelled`` when the sweep was ``stopped``: they will not run)."""
    rows = [read_job(d, sweep_dir, finished, stopped) for d in find_job_dirs(sweep_dir)]
    seen = {row.job for row in rows}
    plan = read_json(sweep_dir / PLAN_FILE) or {}
    planned: list[list[str] | None] = list(plan.get("jobs") or [None] * int(plan.get("count") or 0))
    for number, overrides in enumerate(planned):
        if str(number) not in seen:
            rows.append(JobRow(job=str(number), status="pending" if stopped is None else "cancelled",
                               error="" if stopped is None else stopped, overrides=list(overrides or [])))
    return sorted(rows, key=_job_sort_key)


def metric_names(rows: Sequence[JobRow]) -> list[str]:
    """val/*, then test/*, then train/*, then the rest; alphabetical within each."""
    order = {"val": 0, "test": 1, "train": 2}
    names = {name for row in rows for name in row.metrics}
    return sorted(names, key=lambda n: (order.get(n.split("/")[0], 3), n))


def _csv(header: Sequence[str], records: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in record] for record in records)
    return buffer.getvalue()


def summary_csv(rows: Sequence[JobRow]) -> str:
    names = metric_names(rows)
    header = ["job", "status", "error", "overrides", *names, "best_epoch", "run_dir"]
    records = [[r.job, r.status, r.error, " ".join(r.overrides), *(r.metrics.get(n) for n in names),
                r.best_epoch, r.run_dir] for r in rows]
    return _csv(header, records)


def seed_of(row: JobRow) -> str | None:
    overrides = row.override_map()
    return next((overrides[k] for k in SEED_KEYS if k in overrides), None)


def config_of(row: JobRow) -> str:
    """The job's overrides without the seed: jobs that differ only by seed share it."""
    return " ".join(o for o in row.overrides if _split_override(o)[0] not in SEED_KEYS)


@dataclass
class ConfigStats:
    config: str
    jobs: int
    ok: int
    seeds: list[str]
    mean: dict[str, float]
    std: dict[str, float]


def by_config(rows: Sequence[JobRow]) -> list[ConfigStats]:
    """Mean and sample standard deviation over the ok jobs of each config; empty unless
    some config ran with more than one seed (pending jobs are left out)."""
    groups: dict[str, list[JobRow]] = {}
    for row in rows:
        if row.status not in ("pending", "cancelled"):
            groups.setdefault(config_of(row), []).append(row)
    if not any(len({seed_of(r) for r in group}) > 1 for group in groups.values()):
        return []
    names = metric_names(rows)
    stats = []
    for config, group in groups.items():
        ok = [r for r in group if r.status == "ok"]
        mean, std = {}, {}
        for name in names:
            values = [float(r.metrics[name]) for r in ok if isinstance(r.metrics.get(name), (int, float))]
            values = [v for v in values if math.isfinite(v)]
            if values:
                mean[name] = statistics.fmean(values)
                if len(values) > 1:  # one value has no spread: shown alone, not as "± nan"
                    std[name] = statistics.stdev(values)
        seeds = [seed for seed in map(seed_of, group) if seed is not None]
        stats.append(ConfigStats(config, len(group), len(ok), seeds, mean, std))
    return stats


def by_config_csv(stats: Sequence[ConfigStats], names: Sequence[str]) -> str:
    header = ["config", "jobs", "ok", "seeds"] + [f"{n}_{s}" for n in names for s in ("mean", "std")]
    records = [[s.config, s.jobs, s.ok, " ".join(s.seeds)]
               + [v for n in names for v in (s.mean.get(n), s.std.get(n))] for s in stats]
    return _csv(header, records)


def update(sweep_dir: Path, finished: bool, stopped: str | None = None) -> list[JobRow]:
    """Rewrite ``summary.csv`` (and ``summary_by_config.csv`` when seeds repeat)."""
    sweep_dir = Path(sweep_dir)
    with sweep_lock(sweep_dir):
        rows = collect(sweep_dir, finished, stopped)
        write_text_atomic(sweep_dir / SUMMARY_FILE, summary_csv(rows))
        stats = by_config(rows)
        if stats:
            write_text_atomic(sweep_dir / BY_CONFIG_FILE, by_config_csv(stats, metric_names(rows)))
    return rows


# ---- printed tables ---------------------------------------------------------------------------------

def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _table(header: Sequence[str], records: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in records)) if records else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(record, widths)) for record in records]
    return "\n".join(line.rstrip() for line in lines)


def varying_keys(rows: Sequence[JobRow]) -> list[str]:
    """Override keys whose value is not the same in every job (what the sweep changes)."""
    maps = [r.override_map() for r in rows if r.overrides]
    keys = list(dict.fromkeys(k for m in maps for k in m))
    return [k for k in keys if len({m.get(k) for m in maps}) > 1]


def _shown_metrics(rows: Sequence[JobRow]) -> list[str]:
    return [n for n in metric_names(rows) if n.split("/")[0] in ("val", "test")]


def format_jobs(rows: Sequence[JobRow], max_error: int = 80) -> str:
    keys = varying_keys(rows)
    names = _shown_metrics(rows)
    header = ["job", "status", *keys, *names, "best_epoch", "error"]
    records = []
    for r in rows:
        m = r.override_map()
        error = r.error if len(r.error) <= max_error else r.error[: max_error - 3] + "..."
        records.append([r.job, r.status, *(m.get(k, "") for k in keys),
                        *(_number(r.metrics.get(n)) for n in names), _number(r.best_epoch), error])
    return _table(header, records)


def format_by_config(stats: Sequence[ConfigStats], rows: Sequence[JobRow]) -> str:
    keys = [k for k in varying_keys(rows) if k not in SEED_KEYS]
    names = _shown_metrics(rows)
    header = [*(keys or ["config"]), "ok/jobs", *(f"{n} mean ± std" for n in names)]
    records = []
    for s in stats:
        m = dict(_split_override(o) for o in s.config.split(" ") if o)
        label = [m.get(k, "") for k in keys] if keys else [s.config]
        records.append([*label, f"{s.ok}/{s.jobs}",
                        *(_mean_std(s, n) for n in names)])
    return _table(header, records)


def _mean_std(stats: ConfigStats, name: str) -> str:
    if name not in stats.mean:
        return ""
    if name not in stats.std:  # a single value
        return _number(stats.mean[name])
    return f"{_number(stats.mean[name])} ± {_number(stats.std[name])}"


def failed_jobs(rows: Sequence[JobRow]) -> list[JobRow]:
    return [r for r in rows if r.status in FAILED_STATUSES]


def report(rows: Sequence[JobRow], sweep_dir: Path) -> str:
    """The end-of-sweep text: one table per job, and per config when seeds repeat."""
    order = ["ok", "pruned", "failed", "crashed", "preempted", "interrupted", "stopped", "running", "pending",
             "cancelled"]
    statuses = sorted({r.status for r in rows}, key=lambda s: (order.index(s) if s in order else len(order), s))
    counts = {s: sum(r.status == s for r in rows) for s in statuses}
    text = [f"Sweep summary ({', '.join(f'{n} {s}' for s, n in counts.items())}): {Path(sweep_dir) / SUMMARY_FILE}",
            format_jobs(rows)]
    stats = by_config(rows)
    if stats:
        text += ["", f"Mean ± std over seeds per config: {Path(sweep_dir) / BY_CONFIG_FILE}",
                 format_by_config(stats, rows)]
    return "\n".join(text)
