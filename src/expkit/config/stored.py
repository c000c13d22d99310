"""The config a checkpoint was trained with (stored under ``config`` as plain dicts):
refuse a resume whose model or data shape differs from it."""
from __future__ import annotations

import os
from typing import Any

from expkit.config.checks import ConfigError

#: Where train.py stores the sizes the model took from its data (``DataModule.sizes()``).
SIZES_KEY = "data_sizes"
#: What must not change when resuming: the model, and the data that fixes its input and output shape
#: (train.py checks ``SIZES_KEY`` once the datamodule is built: a vocabulary is only known then).
RESUME_KEYS = ("model", "data._target_", "data.input_shape", "data.num_classes", SIZES_KEY)

_ABSENT = object()


def read_stored_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``config`` entry of a checkpoint (``None`` for runs started from plain Python)."""
    from expkit.engine.checkpoint import load

    config = load(path, map_location="cpu", mmap=True).get("config")
    return config if isinstance(config, dict) else None


def select(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def first_difference(saved: Any, current: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first dotted key (depth first, in the checkpoint's key order) whose values differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for name in list(saved) + [k for k in current if k not in saved]:
            found = first_difference(saved.get(name, _ABSENT), current.get(name, _ABSENT), f"{key}.{name}")
            if found is not None:
                return found
        return None
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)) and len(saved) == len(current):
        return None if list(saved) == list(current) else (key, saved, current)
    return None if saved == current else (key, saved, current)


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else repr(value)


def check_resume_config(stored: dict[str, Any] | None, current: dict[str, Any], path: str | os.PathLike | None,
                        keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """Raise ``ConfigError`` naming the first of ``keys`` that changed (a key ``current`` lacks
    yet, like ``SIZES_KEY`` before the datamodule is built, is checked later).

    Everything else (``trainer.max_epochs``, logging, the seed) may change between the runs.
    """
    if stored is None:
        return
    for key in keys:
        if key == SIZES_KEY and (SIZES_KEY not in current or SIZES_KEY not in stored):
            continue  # not known yet (checked again once the data is built), or a checkpoint from before sizes
        found = first_difference(select(stored, key), select(current, key), key)
        if found is not None:
            name, before, now = found
            raise ConfigError(f"ckpt_path={path}: cannot resume with a different model or data shape: {name} was "
                              f"{_show(before)} in the checkpoint's run and is {_show(now)} now "
                              f"(change it back, or start a new run without ckpt_path)")


#: What eval.py takes from the checkpoint's config: what rebuilds the model and data, and the
#: trainer settings that change the numbers (so its test/acc equals the training run's).
EVAL_KEYS = ("seed", "data", "model", "task")
EVAL_TRAINER_KEYS = ("precision", "num_threads", "matmul_precision", "deterministic", "channels_last",
                     "limit_test_batches")


def merge_stored_config(cfg: Any, stored: dict[str, Any], overrides: list[str], groups: set[str]) -> Any:
    """``cfg`` (the composed eval config) with the checkpoint's model, data and task put in,
    then the command-line ``overrides`` applied again on top, so they win over the checkpoint.

    A group choice on the command line (``data=synthetic``) keeps the composed group instead
    of the stored one; a value (``data.eval_batch_size=512``) is set after the merge.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    parsed = OverridesParser.create().parse_overrides(overrides)
    chosen = {o.key_or_group for o in parsed if o.key_or_group in groups}
    merged = cfg.copy()
    with open_dict(merged):
        for key in EVAL_KEYS:
            if key in stored and key not in chosen:
                merged[key] = stored[key]
        for key in EVAL_TRAINER_KEYS:
            value = select(stored, f"trainer.{key}")
            if value is not _ABSENT and "trainer" not in chosen:
                merged.trainer[key] = value
        for override in parsed:
            if override.key_or_group in groups:
                continue
            if override.is_delete():
                parent, _, leaf = override.key_or_group.rpartition(".")
                node = OmegaConf.select(merged, parent) if parent else merged
                if node is not None and leaf in node:
                    del node[leaf]
            else:
                OmegaConf.update(merged, override.key_or_group, override.value(), force_add=True)
    return merged
