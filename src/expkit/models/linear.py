"""One linear layer on flattened inputs: the classic first MNIST model."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class Linear(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_outputs: int) -> None:
        super().__init__()
        self.layer = nn.Linear(math.prod(input_shape), num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1))
