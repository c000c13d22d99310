from expkit.models.cnn import CNN
from expkit.models.linear import Linear
from expkit.models.mlp import MLP
from expkit.models.resnet import ResNet18

__all__ = ["CNN", "Linear", "MLP", "ResNet18"]
