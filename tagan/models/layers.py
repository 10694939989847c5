"""Layers shared by several models."""

from __future__ import annotations

import math
from typing import Any

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


class InputDropout(nn.Module):
    """pylearn2's dropout: zero each input with probability p and multiply the kept ones by `scale`.

    scale = 1 / (1 - p) is PyTorch's (inverted) dropout; pylearn2's `dropout_fprop` takes any scale (its GAN
    cost's generator default is 1: no rescaling). The identity in eval mode.
    """

    def __init__(self, p: float, scale: float) -> None:
        super().__init__()
        self.p, self.scale = p, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p)
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}, scale={self.scale}"


def init_uniform(module: nn.Module, irange: float) -> None:
    """Every Linear's and Embedding's weights U(-irange, irange), zero biases: pylearn2's `irange` init,
    the authors' (MNIST: G 0.05, maxout D 0.005)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.uniform_(m.weight, -irange, irange)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def uniform_noise(
    n: int, dim: int, generator: torch.Generator | None = None, device: Any = "cpu", scale: float = 1.0
) -> torch.Tensor:
    """(n, dim) noise U(-sqrt3, sqrt3) * scale: zero mean, unit variance (pylearn2's `Generator(noise='uniform')`)."""
    u = torch.rand(n, dim, generator=generator, device=device)
    return (2 * u - 1) * (math.sqrt(3) * scale)
