"""The composed config as a readable tree, groups in a fixed order (printed at start)."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Groups first, in the order a reader follows a run; other keys come after, as composed.
ORDER = ("data", "model", "task", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths")


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == {}:
        return "{}"
    return str(value)


def _lines(node: Any, prefix: str) -> list[str]:
    items = list(node.items())
    out: list[str] = []
    for i, (key, value) in enumerate(items):
        last = i == len(items) - 1
        branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(value, dict) and value:
            out.append(f"{prefix}{branch}{key}")
            out.extend(_lines(value, prefix + indent))
        else:
            out.append(f"{prefix}{branch}{key}: {_value(value)}")
    return out


def config_tree(cfg: DictConfig, resolve: bool = True) -> str:
    """``cfg`` as an indented tree; interpolations are resolved where they can be."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - an interpolation that only resolves inside a run: show it raw
        plain = OmegaConf.to_container(cfg, resolve=False)
    ordered = {k: plain[k] for k in ORDER if k in plain}
    ordered.update({k: v for k, v in plain.items() if k not in ordered})
    return "\n".join(["config", *_lines(ordered, "")])
