"""The open-vocabulary tag CGAN: G(z, p, x) -> a word of a 2.6k-word head, conditioned on the ImageNet posterior.

Mirza & Osindero (2014, Sec. 4.2) generate tag vectors from image features; here the condition also carries
the photo knowledge of the backbone: its ImageNet-1k class posterior p(c|x). Like ConSE (Norouzi et al. 2014)
the posterior is mapped into the word space, but learnt (G is trained on class -> WordNet word pairs beside
the collection's image -> human tag pairs) rather than a fixed convex combination; like DeViSE (Frome et al.
2013) image and label meet in a word-vector space, but the image network stays frozen.

G: noise -> hidden, posterior -> hidden, features -> hidden (replaced by a learnt "no features" vector
when the feature gate is off), joint linear -> logits over the head words (+ `prior_weight` * log of the
WordNet class -> word table applied to p); a Gumbel-softmax draw mixes the head's word vectors (training)
or picks one word (`hard`, sampling: an exact draw from G's categorical distribution).
D: projection discriminator psi(h(t)) + <embed(p) + gate * embed(x), h(t)>.

Serving a trained G (hard samples, expected votes) needs no torch: tagan.tagging.open_decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tagan.models.tag_cgan import FeatureNorm, init_weights


@dataclass
class OpenCGANConfig:
    """Network shape of the open tag CGAN (params.yaml `open_cgan.model`); sizes of the data are filled in."""

    noise_dim: int = 32
    g_noise_hidden: int = 64
    g_post_hidden: int = 256
    g_feat_hidden: int = 256
    g_dropout: float = 0.3
    temperature: float = 0.3  # Gumbel-softmax temperature of the training samples
    prior_weight: float = 1.0  # weight of log(p @ T) added to G's logits (0 = off)
    d_hidden: int = 256
    feature_dim: int = 1280  # filled in from the data
    n_classes: int = 1000
    tag_dim: int = 384
    n_words: int = 0  # head size

    def __post_init__(self) -> None:
        from tagan import config

        for key in (
            "noise_dim",
            "g_noise_hidden",
            "g_post_hidden",
            "g_feat_hidden",
            "d_hidden",
            "temperature",
        ):
            config.positive(key, getattr(self, key))
        config.in_range("g_dropout", self.g_dropout, 0.0, 0.99)
        config.check(self.prior_weight >= 0, "prior_weight", f"must be >= 0, got {self.prior_weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(nn.Module):
    """G(z, p, x, gate) -> head logits (B, W) and a tag vector (B, D)."""

    def __init__(self, cfg: OpenCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = FeatureNorm(cfg.feature_dim)
        self.noise = nn.Sequential(nn.Linear(cfg.noise_dim, cfg.g_noise_hidden), nn.ReLU())  # (B, Hn)
        self.post = nn.Sequential(
            nn.Linear(cfg.n_classes, cfg.g_post_hidden), nn.ReLU(), nn.Dropout(cfg.g_dropout)
        )
        self.feat = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.g_feat_hidden), nn.ReLU(), nn.Dropout(cfg.g_dropout)
        )
        self.missing = nn.Parameter(torch.zeros(cfg.g_feat_hidden))  # the feature branch when gated off
        self.joint = nn.Linear(cfg.g_noise_hidden + cfg.g_post_hidden + cfg.g_feat_hidden, cfg.n_words)
        self.register_buffer("head_vectors", torch.zeros(cfg.n_words, cfg.tag_dim))  # (W, D)
        self.register_buffer("prior", torch.zeros(cfg.n_classes, cfg.n_words))  # (C, W) class -> word table

    def cond_logits(self, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The noise-free part of the logits (B, W): posterior and feature branches (+ the WordNet prior)."""
        hp = self.post(post)  # (B, Hp)
        hf = self.feat(self.norm(x))  # (B, Hf)
        g = gate[:, None]
        hf = g * hf + (1 - g) * self.missing
        w = self.joint.weight[:, self.cfg.g_noise_hidden :]  # (W, Hp + Hf)
        out = F.linear(torch.cat([hp, hf], dim=1), w, self.joint.bias)  # (B, W)
        if self.cfg.prior_weight > 0:
            out = out + self.cfg.prior_weight * torch.log(post @ self.prior + 1e-4)
        return out

    def noise_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The noise part of the logits (B, W)."""
        return F.linear(self.noise(z), self.joint.weight[:, : self.cfg.g_noise_hidden])

    def forward(
        self, z: torch.Tensor, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tag vector (B, D): Gumbel-softmax mix of head vectors, logits (B, W))."""
        logits = self.cond_logits(post, x, gate) + self.noise_logits(
            z
        )  # same as joint(cat[noise, post, feat])
        u = torch.rand_like(logits).clamp_(1e-9, 1 - 1e-9)
        probs = F.softmax((logits - torch.log(-torch.log(u))) / self.cfg.temperature, dim=1)  # (B, W)
        return probs @ self.head_vectors, logits


class Discriminator(nn.Module):
    """D(t, p, x, gate) -> one logit per pair (B,): psi(h(t)) + <embed(p) + gate * embed(x), h(t)>."""

    def __init__(self, cfg: OpenCGANConfig) -> None:
        super().__init__()
        h = cfg.d_hidden
        self.norm = FeatureNorm(cfg.feature_dim)
        self.tag = nn.Sequential(
            nn.Linear(cfg.tag_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2)
        )
        self.post = nn.Linear(cfg.n_classes, h)
        self.feat = nn.Linear(cfg.feature_dim, h)
        self.out = nn.Linear(h, 1)

    def forward(
        self, t: torch.Tensor, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        h = self.tag(t)  # (B, H)
        e = self.post(post) + gate[:, None] * self.feat(self.norm(x))  # (B, H)
        return self.out(h).squeeze(1) + (h * e).sum(1)


def build(cfg: OpenCGANConfig) -> tuple[Generator, Discriminator]:
    """A freshly initialised (G, D) pair (N(0, 0.02) weights)."""
    g, d = Generator(cfg), Discriminator(cfg)
    init_weights(g)
    init_weights(d)
    return g, d
