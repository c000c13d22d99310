"""torchvision's ResNet-18, with the CIFAR-style stem that small images need.

On 32x32 inputs the ImageNet stem (7x7 conv, stride 2, then a max-pool) leaves 8x8 feature
maps after the first layer; the usual CIFAR variant uses a 3x3 stride-1 conv and no max-pool
instead, keeping 32x32 (the common recipe, about 95 % on CIFAR-10).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ResNet18(nn.Module):
    """``cifar_stem``: 3x3 stride-1 first conv and no max-pool (for inputs of about 32x32)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, cifar_stem: bool = True,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
        in_channels = int(input_shape[0])
        if cifar_stem:
            self.net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.net.maxpool = nn.Identity()
        elif in_channels != 3:
            self.net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if cifar_stem or in_channels != 3:
            nn.init.kaiming_normal_(self.net.conv1.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
