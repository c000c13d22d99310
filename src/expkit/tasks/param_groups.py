"""Parameter groups for the optimizer: a separate weight decay for normalization layers and biases.

Decaying a norm layer's scale or a bias toward zero does not regularize the function the way
decaying a weight matrix does, and it hurts many recipes; they get their own group.
"""
from __future__ import annotations

from typing import Any

from torch import nn

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
         *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


def parameter_groups(model: nn.Module, norm_bias_weight_decay: float | None) -> Any:
    """``model.parameters()`` (None), or two groups: the rest, and every bias, every parameter of
    a normalization layer and every other 1-d parameter with ``weight_decay=norm_bias_weight_decay``."""
    if norm_bias_weight_decay is None:
        return model.parameters()
    special: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, NORMS) or name.endswith("bias") or p.ndim <= 1:
                special[id(p)] = p
    rest = [p for p in model.parameters() if id(p) not in special]
    return [{"params": rest}, {"params": list(special.values()), "weight_decay": norm_bias_weight_decay}]
