"""What a model's shape takes from its data: sizes the datamodule knows (and may only know after
reading the data: a vocabulary), passed to the model's constructor instead of numbers in YAML.

A datamodule's ``sizes()`` returns a small dict such as ``{"input_shape": [1, 8, 8],
"num_classes": 10, "num_outputs": 10}`` (``num_outputs``: the width of the model's last
layer: classes, regression targets or vocabulary). The model gets each size its constructor
names and its config leaves out. A constructor that takes ``**kwargs`` without naming them
(torchvision's and timm's model factories) gets the output width as ``num_classes``, the name
those libraries give it.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from omegaconf import DictConfig


def _parameters(node: DictConfig) -> Mapping[str, inspect.Parameter]:
    """The constructor parameters of ``node``'s ``_target_`` (none known for a builtin without a signature)."""
    from hydra._internal.utils import _locate

    try:
        return inspect.signature(_locate(str(node._target_))).parameters
    except (TypeError, ValueError):
        return {}


def size_arguments(node: DictConfig, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``node`` (a model config with ``_target_``) takes from ``sizes``."""
    params = _parameters(node)
    picked = {name: value for name, value in sizes.items() if name in params}
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if open_kwargs and "num_classes" not in params and "num_outputs" in sizes and "num_outputs" not in params:
        picked["num_classes"] = sizes["num_outputs"]
    return {name: value for name, value in picked.items() if name not in node}


def build_model(node: DictConfig, datamodule: Any) -> tuple[Any, dict[str, Any]]:
    """``(model, sizes)``: the model built from ``node`` with the sizes it takes from ``datamodule``."""
    from hydra.utils import instantiate

    from expkit.errors import ConfigError

    sizes = datamodule.sizes()
    given = size_arguments(node, sizes)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [p.name for p in _parameters(node).values()
               if p.kind in named and p.default is p.empty and p.name not in node and p.name not in given]
    if missing:  # a model for other data (model=transformer on images): say what the data offers
        raise ConfigError(f"model._target_={node._target_}: needs {', '.join(missing)}, which "
                          f"{type(datamodule).__name__} does not provide (its sizes: {', '.join(sizes)}); "
                          "pick a model for this data or set them in the model's config")
    return instantiate(node, **given), sizes
