"""Layers shared by several models."""

from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """Linear layer to units x pieces, then the max over each unit's pieces (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x).view(*x.shape[:-1], self.units, self.pieces)  # (..., units, pieces)
        return h.amax(dim=-1)  # (..., units)
