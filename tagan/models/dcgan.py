"""DCGAN for 32x32 single-channel images (Radford et al. 2016), plus D's features for the SVM protocol.

Guidelines followed: strided convs in D, fractionally-strided convs in G, batch norm in both except
G's output and D's input, ReLU in G with tanh output, LeakyReLU 0.2 in D, N(0, 0.02) init.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tagan import config


@dataclass
class ModelConfig:
    """DCGAN architecture (stored in its checkpoint)."""

    z_dim: int = 100
    g_width: int = 64  # G's last hidden layer channels (16x16); earlier layers have 2x and 4x
    d_width: int = 64  # D's first layer channels (16x16); later layers have 2x and 4x
    channels: int = 1

    def __post_init__(self) -> None:
        for key in ("z_dim", "g_width", "d_width", "channels"):
            config.positive(key, getattr(self, key))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for conv weights, N(1, 0.02) for batch-norm scales, zero biases (the paper's init)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, z_dim) -> image (B, C, 32, 32) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.g_width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(cfg.z_dim, 4 * c, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU(True),  # (B, 4c, 4, 4)
            nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(True),  # (B, 2c, 8, 8)
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),  # (B, c, 16, 16)
            nn.ConvTranspose2d(c, cfg.channels, 4, 2, 1), nn.Tanh(),  # (B, C, 32, 32)
        )  # fmt: skip
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """image (B, C, 32, 32) in [-1, 1] -> one logit (B,); `features` gives the SVM features."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.d_width
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Conv2d(cfg.channels, c, 4, 2, 1), nn.LeakyReLU(0.2, True)),  # (B, c, 16, 16)
            nn.Sequential(nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True)),  # (B, 2c, 8, 8)
            nn.Sequential(nn.Conv2d(2 * c, 4 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * c), nn.LeakyReLU(0.2, True)),  # (B, 4c, 4, 4)
        ])  # fmt: skip
        self.out = nn.Conv2d(4 * c, 1, 4, 1, 0)  # (B, 1, 1, 1)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.out(x).flatten()  # (B,)

    @torch.no_grad()
    def features(self, x: torch.Tensor, grid: int = 4, layers: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
        """Conv layers `layers` (1-based) max-pooled to grid x grid, flattened and joined: (B, sum C_l * grid^2)."""
        if not valid_layers(layers, len(self.blocks)):
            raise ValueError(
                f"layers must be an increasing non-empty subset of 1..{len(self.blocks)}, got {layers}"
            )
        feats = []
        for i, block in enumerate(self.blocks[: max(layers)], start=1):
            x = block(x)
            if i in layers:
                feats.append(F.adaptive_max_pool2d(x, grid).flatten(1))  # (B, C_l * grid^2)
        return torch.cat(feats, dim=1)


def valid_layers(layers: Sequence[int], depth: int = 3) -> bool:
    """Whether `layers` is a non-empty increasing list of D's conv layers, numbered 1..depth."""
    return len(layers) > 0 and list(layers) == sorted(set(layers)) and set(layers) <= set(range(1, depth + 1))


def build(cfg: ModelConfig) -> tuple[Generator, Discriminator]:
    """(generator, discriminator) for `cfg`, initialised from N(0, 0.02)."""
    return Generator(cfg), Discriminator(cfg)
