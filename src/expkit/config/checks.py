"""Range checks on the composed config, run before anything is built.

Hydra already rejects unknown keys and options; these rules catch values that
have the right type but make no sense (``trainer.max_epochs=-1``), and report
them as one line that names the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from expkit.errors import ConfigError




def _int(minimum: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
            f"must be an integer >= {minimum}")


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: str(v) in choices, f"must be one of: {', '.join(choices)}")


_POSITIVE = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "must be a number > 0")
_LIMIT = (lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
          "must be null, a fraction in (0, 1] or a number of batches >= 1")
_OPTIONAL_INT1 = (lambda v: v is None or (isinstance(v, int) and v >= 1), "must be null or an integer >= 1")

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int(0),
    "optimized_mode": _one_of("max", "min"),
    "trainer.max_epochs": _int(1),
    "trainer.max_steps": (lambda v: isinstance(v, int) and (v == -1 or v >= 1), "must be -1 (no limit) or >= 1"),
    "trainer.devices": _int(1),
    "trainer.accelerator": _one_of("auto", "cpu", "cuda", "mps"),
    "trainer.strategy": _one_of("auto", "ddp"),
    "trainer.precision": _one_of("32", "bf16-mixed", "16-mixed"),
    "trainer.accumulate_grad_batches": _int(1),
    "trainer.gradient_clip_val": (lambda v: v is None or (isinstance(v, (int, float)) and v > 0),
                                  "must be null or a number > 0"),
    "trainer.gradient_clip_algorithm": _one_of("norm", "value"),
    "trainer.check_val_every_n_epoch": _int(1),
    "trainer.num_sanity_val_steps": _int(0),
    "trainer.log_every_n_steps": _int(1),
    "trainer.limit_train_batches": _LIMIT,
    "trainer.limit_val_batches": _LIMIT,
    "trainer.limit_test_batches": _LIMIT,
    "trainer.num_threads": _OPTIONAL_INT1,
    "trainer.matmul_precision": (lambda v: v is None or v in ("highest", "high", "medium"),
                                 "must be null, highest, high or medium"),
    "optimizer.lr": _POSITIVE,
    "data.batch_size": _int(1),
    "data.eval_batch_size": _OPTIONAL_INT1,
    "data.loader": _one_of("auto", "memory", "dataloader"),
    "data.num_workers": _int(0),
    "task.scheduler_interval": _one_of("epoch", "step"),
}

_MISSING = object()


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


def _check_schema_keys(node: Any, path: str = "") -> None:
    """Keys added with ``+key=value`` to a node that has a schema (``expkit.config.schema``):
    Hydra lets ``+`` through, the object the node builds would not accept the key."""
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in node.keys():
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{path}{key}: not a key of {path.rstrip('.')}{hint}; "
                                  f"allowed: {', '.join(sorted(known))}")
    for key in node.keys():
        _check_schema_keys(node._get_node(key), f"{path}{key}.")


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value outside its allowed range."""
    _check_schema_keys(cfg)
    for key, (ok, allowed) in RULES.items():
        value = _select(cfg, key)
        if value is _MISSING:
            continue
        if not ok(value):
            raise ConfigError(f"{key}={value!r}: {allowed}")
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "mode" in node and node.mode not in ("min", "max"):
            raise ConfigError(f"callbacks.{name}.mode={node.mode!r}: must be one of: min, max")
