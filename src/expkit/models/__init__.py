from expkit.models.cnn import CNN
from expkit.models.gru import GRULM
from expkit.models.linear import Linear
from expkit.models.mlp import MLP
from expkit.models.transformer import TransformerLM

__all__ = ["CNN", "GRULM", "Linear", "MLP", "TransformerLM"]
