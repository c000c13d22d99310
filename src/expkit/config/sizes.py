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


def size_arguments(node: DictConfig, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``node`` (a model config with ``_target_``) takes from ``sizes``."""
    from hydra._internal.utils import _locate

    target = _locate(str(node._target_))
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing can be matched
        return {}
    picked = {name: value for name, value in sizes.items() if name in params}
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if open_kwargs and "num_classes" not in params and "num_outputs" in sizes and "num_outputs" not in params:
        picked["num_classes"] = sizes["num_outputs"]
    return {name: value for name, value in picked.items() if name not in node}


def build_model(node: DictConfig, datamodule: Any) -> tuple[Any, dict[str, Any]]:
    """``(model, sizes)``: the model built from ``node`` with the sizes it takes from ``datamodule``."""
    from hydra.utils import instantiate

    sizes = datamodule.sizes()
    return instantiate(node, **size_arguments(node, sizes)), sizes
