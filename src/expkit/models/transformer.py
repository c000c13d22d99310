"""A small decoder-only transformer for next-token prediction (character language models)."""
from __future__ import annotations

import torch
from torch import nn

from expkit.errors import ConfigError


class TransformerLM(nn.Module):
    """Token and learned position embeddings, ``num_layers`` pre-norm causal self-attention
    blocks, a final norm and a linear head: ``(N, L)`` token ids -> ``(N, L, vocab_size)`` logits.

    ``vocab_size`` and ``block_size`` (the longest context) come from the data.
    """

    def __init__(self, vocab_size: int, block_size: int, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ConfigError(f"model.d_model={d_model}: must be a multiple of model.num_heads={num_heads}")
        self.block_size = block_size
        self.tokens = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=4 * d_model, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(block_size), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        if length > self.block_size:
            raise ValueError(f"input of {length} tokens: longer than block_size={self.block_size}")
        positions = torch.arange(length, device=ids.device)
        x = self.dropout(self.tokens(ids) + self.positions(positions))
        mask = self.causal[:length, :length]
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))
