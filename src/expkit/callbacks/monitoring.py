"""The one check that a monitored metric exists, shared by checkpointing and early stopping."""
from __future__ import annotations

from typing import Mapping

from expkit.errors import ConfigError


def require_metric(key: str, monitor: str, metrics: Mapping[str, float], when: str = "") -> None:
    """Raise a one-line ``ConfigError`` naming ``key``, its value and the metrics there are."""
    if monitor not in metrics:
        raise ConfigError(f"{key}={monitor!r}: not a logged metric{when}; available: {', '.join(sorted(metrics))} "
                          "(set task.monitor, or this key, to one of them)")


def require_at_sanity_check(key: str, monitor: str | None, metrics: Mapping[str, float]) -> None:
    """The sanity validation logs every val/* metric a run will have: a monitored one it lacks is
    a config mistake, reported before the first training epoch (train/* metrics come later)."""
    if monitor is not None and monitor.startswith("val/"):
        require_metric(key, monitor, metrics, " of the validation")
