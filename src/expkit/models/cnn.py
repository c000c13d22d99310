"""A small conv net: two conv-relu-pool blocks and a two-layer head; works on 8x8 and 28x28."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from expkit.errors import ConfigError


class CNN(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_outputs: int, channels: Sequence[int] = (32, 64),
                 hidden_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(f"data.input_shape={list(input_shape)}: model=cnn needs [channels, height, width]")
        in_channels, height, width = input_shape
        blocks: list[nn.Module] = []
        for out_channels in channels:
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, height, width = out_channels, height // 2, width // 2
        if height < 1 or width < 1:
            raise ConfigError(f"data.input_shape={list(input_shape)}: too small for model.channels' {len(channels)} "
                              f"pooling blocks (height and width must be >= {2 ** len(channels)})")
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * height * width, hidden_size), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden_size, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
