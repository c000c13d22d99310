"""Config-side helpers: checks before a run, and turning configs into plain data."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from expkit.config.checks import ConfigError, validate

__all__ = ["ConfigError", "flatten", "to_plain", "validate"]


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts and lists (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}} -> {'a.b': 1}``; lists stay as values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


HPARAM_GROUPS = ("model", "optimizer", "scheduler")
HPARAM_KEYS = ("seed", "data._target_", "data.batch_size", "trainer.max_epochs", "trainer.precision",
               "trainer.accumulate_grad_batches", "task.scheduler_interval")


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HParams tab: every key of the model,
    optimizer and scheduler groups plus a few run-level ones, flat (``optimizer.lr``)."""
    plain = to_plain(cfg)
    flat = flatten(plain)
    keep = {k: v for k, v in flat.items()
            if k.split(".")[0] in HPARAM_GROUPS and not k.endswith("_partial_")}
    keep.update({k: flat[k] for k in HPARAM_KEYS if k in flat})
    return keep
