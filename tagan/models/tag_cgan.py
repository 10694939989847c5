"""Tag CGAN (Mirza & Osindero 2014, Sec. 4.2): generate tag vectors conditioned on image features.

G(z, x): noise -> hidden, image feature -> hidden, joint -> a tag vector. Two output heads:
`linear` (the paper: a free vector in embedding space) and `vocab` (softmax over the vocabulary
with Gumbel noise; the vector is the probability-weighted mix of vocabulary vectors, so samples
land on words). D(t, x): tag vector and image feature -> maxout joint -> one logit, either by
concatenation (the paper) or with a projection term <embed(x), h(t)> (Miyato & Koyama 2018).

Dropout comes in two styles: `torch` (nn.Dropout after G's image branch and D's maxout) and `pylearn2`,
the authors' `MLP.dropout_fprop`: every layer's *input* is dropped, the data inputs included, with a free
scale on the kept units (their GAN cost's generator default is 1, no rescaling; D's yaml uses 1 / include
prob). Init: N(0, 0.02) or pylearn2's U(-irange, irange).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tagan import config
from tagan.models.layers import InputDropout, Maxout, init_uniform, uniform_noise


@dataclass
class TagCGANConfig:
    """Network shape of one tag CGAN (params.yaml `tag_cgan.<preset>.model`); stored in its checkpoint,
    beside the data's DataSizes, so the model rebuilds without the stage."""

    noise_dim: int = 100
    noise: Literal["gaussian", "uniform"] = (
        "gaussian"  # z ~ N(0, 1) (the paper's text) | U(-sqrt3, sqrt3) (pylearn2's)
    )
    g_noise_hidden: int = 500
    g_cond_hidden: int = 2000
    g_joint_hidden: int = 0  # 0 = the paper's single linear joint layer
    g_dropout: float = 0.5
    output: Literal["linear", "vocab"] = "linear"
    temperature: float = 0.5  # Gumbel-softmax temperature of the vocab head
    d_tag_hidden: int = 500
    d_cond_hidden: int = 1200
    d_maxout_units: int = 1000
    d_maxout_pieces: int = 3
    d_dropout: float = 0.5
    discriminator: Literal["concat", "projection"] = "concat"
    dropout_style: Literal["torch", "pylearn2"] = "torch"  # where dropout acts (see the module docstring)
    g_dropout_scale: float = 0.0  # pylearn2: G's kept inputs times this (0 = 1 / (1 - g_dropout))
    d_input_dropout: float = (
        0.0  # pylearn2: drop probability of D's data inputs t and x (authors' MNIST: 0.2)
    )
    g_init_range: float = (
        0.0  # > 0: G's weights U(-r, r) (pylearn2's irange; authors' MNIST G: 0.05); 0: N(0, 0.02)
    )
    d_init_range: float = 0.0  # the same for D (authors' MNIST D: 0.005)

    def __post_init__(self) -> None:
        for key in (
            "noise_dim",
            "g_noise_hidden",
            "g_cond_hidden",
            "d_tag_hidden",
            "d_cond_hidden",
            "d_maxout_units",
            "d_maxout_pieces",
            "temperature",
        ):
            config.positive(key, getattr(self, key))
        for key in ("g_dropout", "d_dropout", "d_input_dropout"):
            config.in_range(key, getattr(self, key), 0.0, 0.99)
        for key in ("g_dropout_scale", "g_init_range", "d_init_range"):
            config.check(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        for key in ("g_dropout_scale", "d_input_dropout"):
            config.check(
                getattr(self, key) == 0 or self.dropout_style == "pylearn2",
                key,
                "needs dropout_style: pylearn2",
            )
        config.check(self.g_joint_hidden >= 0, "g_joint_hidden", f"must be >= 0, got {self.g_joint_hidden}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataSizes:
    """The sizes a tag CGAN takes from its data (not params); stored in the checkpoint beside the config."""

    feature_dim: int  # image feature width (the backbone's)
    tag_dim: int  # tag vector width (the embedding's)
    vocab_size: int = 0  # vocabulary words; used by output="vocab"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FeatureNorm(nn.Module):
    """Standardise image features with train-set mean/std kept as buffers (saved in the checkpoint)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, features: torch.Tensor) -> None:
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def sample_noise(
    n: int, cfg: TagCGANConfig, generator: torch.Generator | None = None, device: Any = "cpu"
) -> torch.Tensor:
    """G's noise (n, noise_dim): N(0, 1) or U(-sqrt3, sqrt3) (zero mean, unit variance, pylearn2's `uniform`)."""
    if cfg.noise == "uniform":
        return uniform_noise(n, cfg.noise_dim, generator, device)
    return torch.randn(n, cfg.noise_dim, generator=generator, device=device)


def _dropout(cfg: TagCGANConfig, p: float, scale: float = 0.0) -> nn.Module:
    """Dropout of the configured style: nn.Dropout(p), or pylearn2's with `scale` (0 = 1 / (1 - p))."""
    if cfg.dropout_style == "torch":
        return nn.Dropout(p)
    return InputDropout(p, scale or 1 / (1 - p))


class Generator(nn.Module):
    """G(z, x) -> a tag vector (B, tag_dim)."""

    def __init__(self, cfg: TagCGANConfig, sizes: DataSizes) -> None:
        super().__init__()
        self.cfg, self.sizes = cfg, sizes
        p, scale = cfg.g_dropout, cfg.g_dropout_scale
        pylearn2 = cfg.dropout_style == "pylearn2"
        self.norm = FeatureNorm(sizes.feature_dim)
        # pylearn2: the first layers' inputs z and x are dropped too, and the joint layer's whole input
        self.input_drop = _dropout(cfg, p, scale) if pylearn2 else nn.Identity()
        self.noise = nn.Sequential(nn.Linear(cfg.noise_dim, cfg.g_noise_hidden), nn.ReLU())  # (B, 500)
        self.noise_drop = _dropout(cfg, p, scale) if pylearn2 else nn.Identity()  # (B, 500)
        self.cond = nn.Sequential(
            nn.Linear(sizes.feature_dim, cfg.g_cond_hidden), nn.ReLU(), _dropout(cfg, p, scale)
        )  # (B, 2000)
        joint_in = cfg.g_noise_hidden + cfg.g_cond_hidden
        out_dim = sizes.vocab_size if cfg.output == "vocab" else sizes.tag_dim
        layers: list[nn.Module] = []
        if cfg.g_joint_hidden:
            layers += [nn.Linear(joint_in, cfg.g_joint_hidden), nn.ReLU(), _dropout(cfg, p, scale)]
            joint_in = cfg.g_joint_hidden
        layers.append(nn.Linear(joint_in, out_dim))  # (B, tag_dim) or (B, V) logits
        self.joint = nn.Sequential(*layers)
        if cfg.output == "vocab":
            if sizes.vocab_size <= 0:
                raise ValueError("output='vocab' needs vocab_size > 0")
            self.register_buffer("vocab_vectors", torch.zeros(sizes.vocab_size, sizes.tag_dim))  # (V, D)

    @property
    def cond_hidden_is_fixed(self) -> bool:
        """Whether cond_hidden(x) is the same on every call (no pylearn2 dropout of x while training)."""
        return not (self.training and isinstance(self.input_drop, InputDropout) and self.input_drop.p > 0)

    def cond_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The image branch before its output dropout (B, g_cond_hidden): the same for every noise draw
        unless x itself is dropped (see cond_hidden_is_fixed)."""
        return self.cond[1](self.cond[0](self.input_drop(self.norm(x))))

    def logits(
        self,
        z: torch.Tensor,
        x: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_hidden: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The joint layer's output: (B, tag_dim) vector or (B, V) vocabulary logits.

        `cond` (B, g_cond_hidden), when given, is the image branch already computed (see sample()); x is then
        unused. `cond_hidden` is the branch before its dropout (see cond_hidden()); the dropout still applies.
        """
        if cond is not None:
            h = cond
        elif cond_hidden is not None:
            h = self.cond[2](cond_hidden)  # (B, g_cond_hidden), dropout only
        else:
            h = self.cond(self.input_drop(self.norm(x)))
        return self.joint(torch.cat([self.noise_drop(self.noise(self.input_drop(z))), h], dim=1))

    def forward(
        self,
        z: torch.Tensor,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        return_logits: bool = False,
        cond: torch.Tensor | None = None,
        cond_hidden: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.logits(z, x, cond, cond_hidden)
        if self.cfg.output == "linear":
            vec = out  # (B, D)
        else:
            u = torch.rand(out.shape, generator=generator, device=out.device).clamp_(1e-9, 1 - 1e-9)
            gumbel = -torch.log(-torch.log(u))
            probs = F.softmax((out + gumbel) / self.cfg.temperature, dim=1)  # (B, V)
            vec = probs @ self.vocab_vectors  # (B, D)
        return (vec, out) if return_logits else vec


class Discriminator(nn.Module):
    """D(t, x) -> one logit per pair (B,)."""

    def __init__(self, cfg: TagCGANConfig, sizes: DataSizes) -> None:
        super().__init__()
        self.cfg, self.sizes = cfg, sizes
        pylearn2 = cfg.dropout_style == "pylearn2"
        self.norm = FeatureNorm(sizes.feature_dim)
        # pylearn2: D's data inputs t and x dropped with d_input_dropout, the maxout's input with d_dropout
        self.input_drop = _dropout(cfg, cfg.d_input_dropout) if pylearn2 else nn.Identity()
        self.tag = nn.Sequential(nn.Linear(sizes.tag_dim, cfg.d_tag_hidden), nn.ReLU())  # (B, 500)
        self.cond = nn.Sequential(nn.Linear(sizes.feature_dim, cfg.d_cond_hidden), nn.ReLU())  # (B, 1200)
        joint_in = cfg.d_tag_hidden + (cfg.d_cond_hidden if cfg.discriminator == "concat" else 0)
        self.joint_drop = _dropout(cfg, cfg.d_dropout) if pylearn2 else nn.Identity()
        self.maxout = Maxout(joint_in, cfg.d_maxout_units, cfg.d_maxout_pieces)  # (B, 1000)
        self.drop = _dropout(cfg, cfg.d_dropout)  # the output layer's input (both styles)
        self.out = nn.Linear(cfg.d_maxout_units, 1)
        if cfg.discriminator == "projection":
            self.embed = nn.Linear(cfg.d_cond_hidden, cfg.d_maxout_units)  # image -> (B, 1000)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ht, hx = self.tag(self.input_drop(t)), self.cond(self.input_drop(self.norm(x)))  # (B, 500), (B, 1200)
        if self.cfg.discriminator == "concat":
            h = self.drop(self.maxout(self.joint_drop(torch.cat([ht, hx], dim=1))))  # (B, 1000)
            return self.out(h).squeeze(1)
        h = self.drop(self.maxout(self.joint_drop(ht)))  # (B, 1000)
        return self.out(h).squeeze(1) + (h * self.embed(hx)).sum(1)  # psi(h) + <embed(x), h>


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) weights, zero biases on every Linear (the DCGAN init)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


def build(cfg: TagCGANConfig, sizes: DataSizes) -> tuple[Generator, Discriminator]:
    """A freshly initialised (G, D) pair."""
    g, d = Generator(cfg, sizes), Discriminator(cfg, sizes)
    for net, irange in ((g, cfg.g_init_range), (d, cfg.d_init_range)):
        if irange:
            init_uniform(net, irange)
        else:
            init_weights(net)
    return g, d


def load_generator(ckpt: dict[str, Any]) -> Generator:
    """Rebuild G from a checkpoint {'config': {'model', 'sizes'}, 'state_dict': {'generator'}} in eval mode."""
    model = dict(ckpt["config"]["model"])
    # checkpoints written before DataSizes kept the sizes inside the model config
    sizes = ckpt["config"].get("sizes") or {k: model.pop(k) for k in ("feature_dim", "tag_dim", "vocab_size")}
    g = Generator(TagCGANConfig(**model), DataSizes(**sizes))
    g.load_state_dict(ckpt["state_dict"]["generator"])
    return g.eval()


@torch.no_grad()
def sample(
    g: Generator, features: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 8192
) -> torch.Tensor:
    """`samples` generated tag vectors per image: features (B, F) -> (B, S, D), deterministic in seed."""
    gen = torch.Generator(device=features.device).manual_seed(seed)
    b = features.shape[0]
    x = features.repeat_interleave(samples, dim=0)  # (B*S, F)
    z = sample_noise(x.shape[0], g.cfg, gen, features.device)  # (B*S, Z)
    # In eval mode the image branch is the same for all S samples of an image: compute it once per image
    # (most of G's work; same numbers). In train mode each sample keeps its own dropout mask.
    h = None if g.training else g.cond(g.norm(features)).repeat_interleave(samples, dim=0)  # (B*S, H)
    out = [
        g(z[i : i + batch_size], x[i : i + batch_size], generator=gen,
          cond=None if h is None else h[i : i + batch_size])
        for i in range(0, x.shape[0], batch_size)
    ]  # fmt: skip
    return torch.cat(out).view(b, samples, -1)
