"""Checks on the composed config, run before anything is built.

Hydra already rejects unknown keys and wrong types on nodes with a schema. These checks
run every component's own option rules (``expkit.options``) on its node, so a value of
the right type that makes no sense (``trainer.max_epochs=-1``) is one line naming the key,
the value and what is allowed. A node without a registered schema (a component a
researcher added in one file) is checked against the ``Options`` its class declares.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Iterator

from omegaconf import Container, DictConfig, OmegaConf

from expkit.errors import ConfigError
from expkit.options import MODE, Options, check_node, integer, option


@dataclass
class RunOptions(Options):
    """The top-level keys of ``conf/train.yaml`` that have rules."""

    seed: int = option(42, integer(0), "seeds weights, dropout, data splits and shuffling")
    optimized_mode: str = option("max", MODE, "decides the worst value a failed sweep job reports")


def _target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every node that builds an object (has ``_target_``), depth first, with its dotted prefix."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        yield path, node
    for key in node.keys():
        yield from _target_nodes(node._get_node(key), f"{path}{key}.")


def options_of(node: DictConfig, path: str) -> type | None:
    """The ``Options`` of the component ``node`` builds: from its schema, else from its class."""
    from expkit.config.schema import OPTIONS_OF_SCHEMA

    schema = OmegaConf.get_type(node)
    if schema in OPTIONS_OF_SCHEMA:
        return OPTIONS_OF_SCHEMA[schema]
    target = str(node._target_)
    module, _, name = target.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or not module.startswith(e.name):
            raise  # the module exists but imports something missing: the researcher's traceback
        raise ConfigError(f"{path}_target_={target!r}: no module named {e.name!r}") from None
    if not hasattr(owner, name):
        raise ConfigError(f"{path}_target_={target!r}: {module} has no {name!r}")
    options = getattr(getattr(owner, name), "Options", None)
    return options if isinstance(options, type) and dataclasses.is_dataclass(options) else None


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first option outside its allowed values."""
    top = {f.name for f in dataclasses.fields(RunOptions)}
    RunOptions(**{k: cfg[k] for k in top if k in cfg})
    for path, node in _target_nodes(cfg):
        options = options_of(node, path)
        if options is not None:
            check_node(options, node.keys(), lambda key, node=node: _plain(node[key]), path)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value
