"""A multi-layer perceptron on flattened inputs."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from expkit.errors import ConfigError


class MLP(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_outputs: int, hidden_sizes: Sequence[int] = (128, 64),
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout}: must be in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
