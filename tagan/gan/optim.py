"""The GAN trainer's settings and arithmetic: OptimConfig / TrainConfig (a preset's `optim` / `train`), the losses
(bce on logits, hinge), SGD/Adam with the paper's lr and momentum schedules, pylearn2 max-norm, the EMA of G."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tagan import config

Loss = Literal["bce", "hinge"]


# ---------------------------------------------------------------------------------------------- configs


@dataclass
class OptimConfig:
    """Optimisers of G and D and their schedule (params.yaml `<stage>.optim`)."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 2e-4  # G's learning rate, and D's unless lr_d is set
    lr_d: float | None = None  # D's learning rate when it differs from G's
    lr_decay: float = 1.0  # lr divided by this factor every step (1 = constant) ...
    lr_min: float = 1e-6  # ... down to this floor
    momentum: float = 0.5  # sgd: momentum at step 0 ...
    momentum_final: float | None = None  # ... rising linearly to this (None = constant) ...
    momentum_ramp_steps: int = 1  # ... over this many steps
    betas: tuple[float, float] = (0.5, 0.999)  # adam
    max_norm: float = (
        0.0  # cap on each unit's incoming weight norm after every step (pylearn2's max_col_norm; 0 = off)
    )

    def __post_init__(self) -> None:
        for key in ("lr", "lr_min"):
            config.positive(key, getattr(self, key))
        config.check(self.lr_d is None or self.lr_d > 0, "lr_d", f"must be > 0 (or null), got {self.lr_d}")
        config.check(
            self.lr_decay >= 1.0, "lr_decay", f"must be >= 1 (a per-step divisor), got {self.lr_decay}"
        )
        config.in_range("momentum", self.momentum, 0.0, 0.99)
        if self.momentum_final is not None:
            config.in_range("momentum_final", self.momentum_final, 0.0, 0.99)
        config.check(
            self.momentum_ramp_steps >= 0,
            "momentum_ramp_steps",
            f"must be >= 0, got {self.momentum_ramp_steps}",
        )
        config.check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        config.check(self.max_norm >= 0, "max_norm", f"must be >= 0 (0 = off), got {self.max_norm}")


@dataclass
class TrainConfig:
    """The training loop (params.yaml `<stage>.train`; stages add their own loss terms in a subclass)."""

    loss: Loss = "bce"  # bce: non-saturating GAN loss on logits | hinge
    batch_size: int = 64
    steps: int = 3000
    ema_decay: float = 0.0  # exponential moving average of G's weights (0 = off)
    select_every: int = 0  # model selection: score G every N steps and keep the best (0 = keep the last)
    checkpoint_every: int = 500  # steps between resume files (0 = never)
    log_every: int = 50  # steps per row of the loss plot (means over the row's steps)
    # bf16: G's and D's forward passes autocast to bfloat16 (AVX512-BF16 CPUs, tensor cores): faster, but
    # not the fp32 arithmetic (weights, optimiser and losses stay fp32)
    precision: Literal["fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        config.positive("batch_size", self.batch_size)
        config.positive("steps", self.steps)
        config.in_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        for key in ("select_every", "checkpoint_every", "log_every"):
            config.check(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")


# ---------------------------------------------------------------------------------------------- losses


def real_term(kind: Loss, logits: torch.Tensor) -> torch.Tensor:
    """D's loss on logits of examples it should call real."""
    if kind == "hinge":
        return F.relu(1 - logits).mean()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def fake_term(kind: Loss, logits: torch.Tensor) -> torch.Tensor:
    """D's loss on logits of examples it should call fake."""
    if kind == "hinge":
        return F.relu(1 + logits).mean()
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def d_loss(kind: Loss, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from its logits on a real and a fake batch."""
    return real_term(kind, real) + fake_term(kind, fake)


def g_loss(kind: Loss, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from D's logits on fakes (non-saturating for bce)."""
    if kind == "hinge":
        return -fake.mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


# ---------------------------------------------------------------------------------------------- optimisers


def learning_rates(optim: OptimConfig, step: int) -> tuple[float, float]:
    """(G's lr, D's lr) at `step`: divided by lr_decay every step, down to lr_min."""
    decay = optim.lr_decay**step
    lr_d = optim.lr if optim.lr_d is None else optim.lr_d
    return max(optim.lr / decay, optim.lr_min), max(lr_d / decay, optim.lr_min)


def momentum_at(optim: OptimConfig, step: int) -> float:
    """SGD momentum at `step`: linear from momentum to momentum_final over momentum_ramp_steps."""
    if optim.momentum_final is None:
        return optim.momentum
    frac = min(1.0, step / max(1, optim.momentum_ramp_steps))
    return optim.momentum + (optim.momentum_final - optim.momentum) * frac


def make_optimizer(optim: OptimConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum or Adam; foreach kernels (one call for all tensors; bit-identical to the loop)."""
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim.momentum, foreach=True)
    return torch.optim.Adam(params, lr=lr, betas=optim.betas, foreach=True)


def max_norm_weights(module: nn.Module) -> list[torch.Tensor]:
    """The weights max-norm caps: every Linear layer's (one row per unit)."""
    return [m.weight for m in module.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def apply_max_norm(weights: list[torch.Tensor], max_norm: float) -> None:
    """Rescale every unit's incoming weight vector (row) to norm <= max_norm (pylearn2's max_col_norm)."""
    for w in weights:
        w.renorm_(p=2, dim=0, maxnorm=max_norm)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (parameters); buffers copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    buffers = list(ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(model.buffers()))


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA's decay at `step`: warmed up so that the random initial weights fade out early."""
    return min(decay, (1 + step) / (10 + step))
