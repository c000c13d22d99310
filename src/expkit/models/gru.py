"""A GRU language model: embedding, stacked GRU, linear head."""
from __future__ import annotations

import torch
from torch import nn


class GRULM(nn.Module):
    """``(N, L)`` token ids -> ``(N, L, vocab_size)`` next-token logits; ``vocab_size`` comes from the data."""

    def __init__(self, vocab_size: int, embedding_size: int = 64, hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.gru = nn.GRU(embedding_size, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embedding(ids))
        return self.head(self.dropout(hidden))
