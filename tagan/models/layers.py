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
        # max, not amax: the same values, and a backward that routes the gradient by index instead of
        # building an equality mask (they differ only on exact ties, where amax splits the gradient)
        return h.max(dim=-1).values  # (..., units)
