from expkit.models.cnn import CNN
from expkit.models.gru import GRULM
from expkit.models.linear import Linear
from expkit.models.mlp import MLP
from expkit.models.resnet import ResNet18
from expkit.models.transformer import TransformerLM

__all__ = ["CNN", "GRULM", "Linear", "MLP", "ResNet18", "TransformerLM"]
