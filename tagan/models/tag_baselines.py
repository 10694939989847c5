"""Discriminative references for the tag CGAN: an MLP multi-label classifier and a tag-vector regressor."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tagan.models.tag_cgan import FeatureNorm


@dataclass
class MLPConfig:
    """feature -> hidden ReLU (dropout) -> out; kind 'classifier' gives logits, 'regressor' a unit vector."""

    kind: Literal["classifier", "regressor"] = "classifier"
    feature_dim: int = 1280
    hidden: int = 512
    out_dim: int = 100
    dropout: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TagMLP(nn.Module):
    """Features (B, F) -> logits (B, V) or an L2-normalised tag vector (B, D)."""

    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = FeatureNorm(cfg.feature_dim)
        self.net = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),  # (B, H)
            nn.Linear(cfg.hidden, cfg.out_dim),  # (B, V | D)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(self.norm(x))
        return F.normalize(y, dim=1) if self.cfg.kind == "regressor" else y


def fit(
    cfg: MLPConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
) -> TagMLP:
    """Train with Adam: BCE on multi-hot targets (classifier) or cosine loss to mean tag vectors (regressor)."""
    torch.manual_seed(seed)
    model = TagMLP(cfg)
    model.norm.fit(x)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], batch_size):
            b = perm[i : i + batch_size]
            out = model(x[b])
            if cfg.kind == "classifier":
                loss = F.binary_cross_entropy_with_logits(out, y[b])
            else:
                loss = (1 - (out * F.normalize(y[b], dim=1)).sum(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def load_model(ckpt: dict[str, Any]) -> TagMLP:
    """Rebuild a TagMLP from {'config': MLPConfig dict, 'state_dict': ...} in eval mode."""
    model = TagMLP(MLPConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
