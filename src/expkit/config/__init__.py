"""Config-side helpers: checks before a run, and turning configs into plain data."""
from __future__ import annotations

from typing import Any

from omegaconf import Container, DictConfig, OmegaConf

from expkit.config.checks import ConfigError, validate

__all__ = ["ConfigError", "flatten", "hparam_metrics", "hparams", "to_plain", "validate"]


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
               "trainer.accumulate_grad_batches", "task.scheduler_interval", "ckpt_path")
#: Config groups whose choice is not a hyperparameter.
NOT_HPARAM_GROUPS = ("hydra", "paths", "local", "callbacks", "logger", "launcher", "debug", "hparams_search")


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HParams tab, flat (``optimizer.lr``): the
    group choices (``model: mlp``, whether overridden or not, so every run of a sweep has the
    column), every key of the model, optimizer and scheduler groups, a few run-level ones
    (``ckpt_path``: which leg of a resumed run this is) and whatever the command line set."""
    flat = flatten(to_plain(cfg))
    keep = group_choices()
    keep.update({k: v for k, v in flat.items() if k.split(".")[0] in HPARAM_GROUPS and not k.endswith("_partial_")})
    keep.update({k: flat[k] for k in HPARAM_KEYS if k in flat})
    keep.update(overridden(cfg))
    return keep


def group_choices() -> dict[str, str]:
    """Which option of each config group this run uses (``model: mlp``, ``scheduler: none``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {group: "none" if choice is None else str(choice) for group, choice in choices.items()
            if group.split("/")[0] not in NOT_HPARAM_GROUPS and not group.startswith("schema")}


def hparam_metrics(metrics: dict[str, Any], optimized: str | None) -> dict[str, float]:
    """The HParams tab's metric columns: the final ``val/*`` and ``test/*`` values (and, in an
    Optuna search, the trial's ``trial/*``: pruned, epochs, last reported value), the optimized
    metric first (``epoch``, ``lr`` and per-step values are not results)."""
    keep = {k: float(v) for k, v in metrics.items()
            if isinstance(v, float) and k.split("/")[0] in ("val", "test", "trial") and not k.endswith("_step")}
    first = {optimized: keep.pop(optimized)} if optimized in keep else {}
    return {**first, **dict(sorted(keep.items()))}


def overridden(cfg: DictConfig) -> dict[str, Any]:
    """The keys this run's command line (or a sweeper) set, flat and resolved; a group
    override gives the option's name (``model: linear``). In a sweep these are what
    differ between jobs, so TensorBoard's HParams tab must show them whatever they are."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    found: dict[str, Any] = {}
    for override in hydra_cfg.overrides.task:
        if override.startswith("~"):
            continue  # a deleted key has no value
        key = override.split("=", 1)[0].lstrip("+")
        if key in choices:
            found[key] = choices[key]
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        if isinstance(value, Container):
            value = OmegaConf.to_container(value, resolve=True)
        if isinstance(value, dict):
            found.update(flatten(value, f"{key}."))
        else:
            found[key] = value
    return found


_ABSENT = object()
