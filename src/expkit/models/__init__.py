from expkit.models.cnn import CNN
from expkit.models.linear import Linear
from expkit.models.mlp import MLP

__all__ = ["CNN", "Linear", "MLP"]
