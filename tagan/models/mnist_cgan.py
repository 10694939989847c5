"""Conditional GANs for MNIST: the paper's MLP with maxout (Mirza & Osindero 2014) and a conv model.

Both generators output logits for 28x28 images in [0, 1] (apply `torch.sigmoid`); both
discriminators return one logit per image, conditioned on the digit by concatenation or by
projection (Miyato & Koyama 2018: D(x, y) = psi(phi(x)) + embed(y) . phi(x)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tagan import config
from tagan.models.layers import Maxout, init_uniform, uniform_noise

NUM_CLASSES = 10
IMAGE_PIXELS = 28 * 28


@dataclass
class ModelConfig:
    """Architecture of one CGAN (stored in its checkpoint to rebuild it without the stage)."""

    arch: Literal["mlp", "conv"] = "conv"
    discriminator: Literal["concat", "projection"] = "projection"
    z_dim: int = 64
    # uniform: U[0, 1) (the paper's text: "the unit hypercube"); uniform_sym: U[-sqrt 3, sqrt 3), zero mean and
    # unit variance (the authors' pylearn2 Generator(noise='uniform')); normal: N(0, 1)
    noise: Literal["uniform", "uniform_sym", "normal"] = "normal"
    g_width: int = 64  # conv: channels of G's 14x14 layer (7x7 has twice as many)
    d_width: int = 64  # conv: channels of D's 14x14 layer (7x7 has twice as many)
    # mlp: dropout after every hidden layer (paper: 0.5 in both; the authors' code trains G undropped:
    # AdversaryCost2's generator_default_input_include_prob is 1)
    g_dropout: float = 0.0
    d_dropout: float = 0.0
    # mlp concat D: value of the hot entry of the one-hot label D reads. Neither the paper nor the authors' code
    # scales y; with SGD a plain one-hot (energy 1) trails the image (energy ~100) and D ignores the label
    d_label_scale: float = 1.0
    spectral_norm: bool = False  # conv: spectral norm on every D layer
    sample_scale: float = (
        1.0  # spread of the noise when sampling (1 = as trained; < 1 truncates towards its mean)
    )

    def __post_init__(self) -> None:
        for key in ("z_dim", "g_width", "d_width", "sample_scale", "d_label_scale"):
            config.positive(key, getattr(self, key))
        for key in ("g_dropout", "d_dropout"):
            config.in_range(key, getattr(self, key), 0.0, 0.9)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_noise(
    n: int,
    cfg: ModelConfig,
    generator: torch.Generator | None = None,
    device: Any = "cpu",
    scale: float = 1.0,
) -> torch.Tensor:
    """Noise z of shape (n, z_dim) as `cfg.noise` says, spread by `scale` around its mean (scale < 1 is the
    truncation trick of Brock et al. 2019)."""
    if cfg.noise == "uniform":
        return 0.5 + (torch.rand(n, cfg.z_dim, generator=generator, device=device) - 0.5) * scale
    if cfg.noise == "uniform_sym":
        return uniform_noise(n, cfg.z_dim, generator, device, scale)
    return torch.randn(n, cfg.z_dim, generator=generator, device=device) * scale


class MLPGenerator(nn.Module):
    """Paper G: z -> 200 ReLU, one-hot y -> 1000 ReLU, joint 1200 ReLU -> 784 (sigmoid outside)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        p = cfg.g_dropout
        self.z_path = nn.Sequential(nn.Linear(cfg.z_dim, 200), nn.ReLU(), nn.Dropout(p))  # (B, 200)
        self.y_path = nn.Sequential(nn.Linear(NUM_CLASSES, 1000), nn.ReLU(), nn.Dropout(p))  # (B, 1000)
        self.joint = nn.Sequential(
            nn.Linear(1200, 1200), nn.ReLU(), nn.Dropout(p),  # (B, 1200)
            nn.Linear(1200, IMAGE_PIXELS),  # (B, 784) logits
        )  # fmt: skip
        # the authors' pylearn2 init; with PyTorch's default init G's z path died early and every sample of a
        # digit was identical (test Parzen -113 vs -42 with this init, same schedule)
        init_uniform(self, 0.05)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y, NUM_CLASSES).float()
        h = torch.cat([self.z_path(z), self.y_path(onehot)], dim=1)  # (B, 1200)
        return self.joint(h).view(-1, 1, 28, 28)  # (B, 1, 28, 28) logits


class MLPDiscriminator(nn.Module):
    """Paper D: x -> maxout 240x5, y -> maxout 50x5, joint maxout 240x4 -> 1 logit (or projection)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        p = cfg.d_dropout
        self.projection = cfg.discriminator == "projection"
        self.label_scale = cfg.d_label_scale
        self.x_path = nn.Sequential(Maxout(IMAGE_PIXELS, 240, 5), nn.Dropout(p))  # (B, 240)
        if self.projection:
            self.joint = nn.Sequential(Maxout(240, 240, 4), nn.Dropout(p))  # (B, 240) = phi(x)
            self.embed = nn.Embedding(NUM_CLASSES, 240)
        else:
            self.y_path = nn.Sequential(Maxout(NUM_CLASSES, 50, 5), nn.Dropout(p))  # (B, 50)
            self.joint = nn.Sequential(Maxout(290, 240, 4), nn.Dropout(p))  # (B, 240)
        self.out = nn.Linear(240, 1)
        init_uniform(self, 0.005)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hx = self.x_path(x.reshape(-1, IMAGE_PIXELS))  # (B, 240)
        if self.projection:
            phi = self.joint(hx)  # (B, 240)
            return self.out(phi).squeeze(1) + (self.embed(y) * phi).sum(1)  # (B,)
        hy = self.y_path(F.one_hot(y, NUM_CLASSES).float() * self.label_scale)  # (B, 50)
        return self.out(self.joint(torch.cat([hx, hy], dim=1))).squeeze(1)  # (B,)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine, then a per-class scale and shift (de Vries et al. 2017)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(NUM_CLASSES, channels)
        self.beta = nn.Embedding(NUM_CLASSES, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g, b = self.gamma(y)[:, :, None, None], self.beta(y)[:, :, None, None]  # (B, C, 1, 1)
        return self.bn(x) * g + b


def init_dcgan(module: nn.Module) -> None:
    """N(0, 0.02) conv/linear weights, zero biases (Radford et al. 2016)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConvGenerator(nn.Module):
    """DCGAN-style conv G conditioned twice: label embedding joined to z, class-conditional batch norm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.g_width
        self.embed = nn.Embedding(NUM_CLASSES, cfg.z_dim)
        self.up0 = nn.ConvTranspose2d(2 * cfg.z_dim, 4 * c, 7, 1, 0, bias=False)  # (B, 4c, 7, 7)
        self.bn0 = ConditionalBatchNorm2d(4 * c)
        self.up1 = nn.ConvTranspose2d(4 * c, 2 * c, 4, 2, 1, bias=False)  # (B, 2c, 14, 14)
        self.bn1 = ConditionalBatchNorm2d(2 * c)
        self.up2 = nn.ConvTranspose2d(2 * c, 1, 4, 2, 1)  # (B, 1, 28, 28)
        self.apply(init_dcgan)
        # small like z's weights: a N(0, 1) label embedding outweighs z from the first steps and G learns
        # to ignore z (every sample of a digit alike: within-class pixel std 0.02 vs 0.15 for real digits)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y)], dim=1)[:, :, None, None]  # (B, 2z, 1, 1)
        h = F.relu(self.bn0(self.up0(h), y))  # (B, 4c, 7, 7)
        h = F.relu(self.bn1(self.up1(h), y))  # (B, 2c, 14, 14)
        return self.up2(h)  # (B, 1, 28, 28) logits


class ConvDiscriminator(nn.Module):
    """DCGAN-style conv D: 28x28 -> 14x14 -> 7x7 -> 4x4 features phi; projection or one-hot channels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.d_width
        sn = nn.utils.spectral_norm if cfg.spectral_norm else (lambda m: m)
        norm = (lambda ch: nn.Identity()) if cfg.spectral_norm else nn.BatchNorm2d
        self.projection = cfg.discriminator == "projection"
        in_ch = 1 if self.projection else 1 + NUM_CLASSES
        self.phi = nn.Sequential(
            sn(nn.Conv2d(in_ch, c, 4, 2, 1)), nn.LeakyReLU(0.2),  # (B, c, 14, 14)
            sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), norm(2 * c), nn.LeakyReLU(0.2),  # (B, 2c, 7, 7)
            sn(nn.Conv2d(2 * c, 4 * c, 3, 2, 1)), norm(4 * c), nn.LeakyReLU(0.2),  # (B, 4c, 4, 4)
            nn.Flatten(),  # (B, 64c)
        )  # fmt: skip
        self.psi = sn(nn.Linear(4 * c * 16, 1))
        if self.projection:
            self.embed = sn(nn.Embedding(NUM_CLASSES, 4 * c * 16))
        self.apply(init_dcgan)
        if self.projection:  # small like the other weights: a N(0, 1) embedding swamps psi at the start
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1  # [0, 1] -> [-1, 1]
        if not self.projection:  # one-hot label as 10 constant channels
            maps = F.one_hot(y, NUM_CLASSES).float()[:, :, None, None].expand(-1, -1, 28, 28)
            x = torch.cat([x, maps], dim=1)  # (B, 11, 28, 28)
        phi = self.phi(x)  # (B, 64c)
        out = self.psi(phi).squeeze(1)  # (B,)
        if self.projection:
            out = out + (self.embed(y) * phi).sum(1)
        return out


def build(cfg: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for `cfg`."""
    if cfg.arch == "mlp":
        return MLPGenerator(cfg), MLPDiscriminator(cfg)
    return ConvGenerator(cfg), ConvDiscriminator(cfg)
