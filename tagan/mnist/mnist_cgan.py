"""The MNIST conditional GAN around its networks: training task, sampling, model selection, evaluation.

`MnistCGANTask` plugs the label-conditioned networks of `tagan.models.mnist_cgan` (and the optional
mode-seeking term) into `tagan.gan.fit`; the rest samples digits from a trained G, scores it by
validation Parzen log-likelihood (model selection, noise spread) and runs the test protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tagan import config, gan, training, utils
from tagan.models.mnist_cgan import ModelConfig, build, sample_noise

log = logging.getLogger(__name__)

# the test metrics also reported for the untruncated noise (spread 1) next to a truncated headline
UNTRUNCATED_KEYS = (
    "parzen_ll",
    "parzen_se",
    "parzen_sigma",
    "fid",
    "conditional_accuracy",
    "within_class_std",
)


@dataclass
class MnistTrainConfig(gan.TrainConfig):
    """The trainer's settings plus the MNIST CGAN's own loss term."""

    mode_seeking: float = 0.0  # weight of the mode-seeking term (Mao et al. 2019) against collapse (0 = off)

    def __post_init__(self) -> None:
        super().__post_init__()
        config.check(
            self.mode_seeking >= 0, "mode_seeking", f"must be >= 0 (0 = off), got {self.mode_seeking}"
        )


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mode-seeking term (Mao et al. 2019): small when G maps distant noise to distant images.

    fake (2h, ...) and z (2h, z_dim) hold pairs: row i and row h + i share a label, not their noise.
    Returns 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + eps); minimising it spreads G's samples.
    """
    h = len(z) // 2
    image_gap = (fake[:h] - fake[h : 2 * h]).abs().flatten(1).mean(1)  # (h,)
    noise_gap = (z[:h] - z[h : 2 * h]).abs().mean(1)  # (h,)
    return 1.0 / ((image_gap / noise_gap).mean() + 1e-5)


class MnistCGANTask(gan.GANTask):
    """Digits conditioned on their label: G(z, y) -> logits (sigmoid applied here), D(x, y) on [0, 1] images."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, model: ModelConfig, mode_seeking: float
    ) -> None:
        self.images, self.labels = images, labels  # (N, 1, 28, 28) in [0, 1], (N,)
        self.model, self.mode_seeking = model, mode_seeking

    @classmethod
    def from_arrays(
        cls, x: np.ndarray, y: np.ndarray, model: ModelConfig, mode_seeking: float, device: torch.device
    ) -> MnistCGANTask:
        """From uint8 images (N, 28, 28) and labels (N,), kept on `device` as tensors."""
        images = torch.from_numpy(x.astype(np.float32) / 255).unsqueeze(1).to(device)  # (N, 1, 28, 28)
        return cls(images, torch.from_numpy(y.astype(np.int64)).to(device), model, mode_seeking)

    def __len__(self) -> int:
        return len(self.images)

    def device(self) -> torch.device:
        return self.images.device

    def batch(self, idx: torch.Tensor) -> gan.Batch:
        x = self.images[idx].to(memory_format=torch.channels_last)  # (B, 1, 28, 28)
        return gan.Batch(x, self.labels[idx])

    def generate(self, g: nn.Module, batch: gan.Batch) -> gan.Fake:
        y = batch.cond
        assert y is not None
        # with mode seeking, fakes come in pairs: the second half repeats the first half's labels
        y_fake = torch.cat([y[: len(y) // 2]] * 2) if self.mode_seeking else y  # (B',)
        z = sample_noise(len(y_fake), self.model, device=y.device)  # (B', z_dim)
        return gan.Fake(torch.sigmoid(g(z, y_fake)), y_fake, z)  # (B', 1, 28, 28)

    def g_extra(self, fake: gan.Fake, batch: gan.Batch) -> torch.Tensor | None:
        if not self.mode_seeking:
            return None
        return self.mode_seeking * mode_seeking_loss(fake.samples, fake.z)


# ---------------------------------------------------------------------------------------------- sampling


@torch.inference_mode()
def generate(
    g: nn.Module, mcfg: ModelConfig, labels: torch.Tensor, seed: int, batch: int = 1000
) -> torch.Tensor:
    """Images (N, 28, 28) in [0, 1] for `labels`, from noise of a generator seeded by `seed` (eval mode)."""
    was_training = g.training
    g.eval()
    device = training.module_device(g)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(labels), batch):
        y = labels[i : i + batch]
        z = sample_noise(len(y), mcfg, gen, scale=mcfg.sample_scale).to(device)
        out.append(torch.sigmoid(g(z, y.to(device))).squeeze(1).cpu())  # (b, 28, 28)
    g.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 28, 28)


def balanced_labels(n: int) -> torch.Tensor:
    """n labels, n/10 of each digit: 0,1,...,9,0,1,... (N,)."""
    return torch.arange(n) % 10


def save_digit_grid(path: Path, g: nn.Module, mcfg: ModelConfig, seed: int, columns: int = 10) -> None:
    """PNG with one row per digit (0-9) and `columns` fixed noise vectors (the paper's Figure 2)."""
    labels = torch.arange(10).repeat_interleave(columns)  # (10 * columns,)
    images = generate(g, mcfg, labels, seed)  # (10 * columns, 28, 28)
    utils.write_grid_png(path, images.view(10, columns, 28, 28).numpy())


def load_generator(path: Path | str, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Rebuild a trained generator from its checkpoint (eval mode) and its ModelConfig."""
    state = utils.load_checkpoint(path, device)
    mcfg = ModelConfig(**state["config"]["model"])
    g, _ = build(mcfg)
    g.load_state_dict(state["state_dict"])
    return g.to(device).eval(), mcfg


# ---------------------------------------------------------------------------------------------- selection


def parzen_selector(
    x_val: np.ndarray,
    model: ModelConfig,
    *,
    val_images: int,
    samples: int,
    sigma_grid: list[float],
    seed: int,
    device: torch.device,
) -> Callable[..., float]:
    """Model-selection score `score(G, mcfg=model)`: best mean validation Parzen LL over the sigma grid."""
    from tagan.metrics import select_parzen_sigma

    val = x_val[:val_images].reshape(-1, 784).astype(np.float32) / 255  # (M, 784)
    labels = balanced_labels(samples)

    def score(g: nn.Module, mcfg: ModelConfig | None = None) -> float:
        images = generate(g, mcfg or model, labels, seed + 4242).reshape(-1, 784).numpy()  # (N, 784)
        sigma, curve = select_parzen_sigma(images, val, np.asarray(sigma_grid), device=device)
        return curve[sigma]

    return score


def choose_sample_scale(
    model: ModelConfig, scales: list[float], g: nn.Module, scorer: Callable[..., float]
) -> tuple[ModelConfig, dict[float, float]]:
    """G's ModelConfig with the noise spread of `scales` that scores best on validation.

    Returns (config, {scale: validation Parzen LL}); the scores are empty when there is one scale only.
    """
    if len(scales) == 1:
        return dataclasses.replace(model, sample_scale=scales[0]), {}
    scores = {s: scorer(g, dataclasses.replace(model, sample_scale=s)) for s in scales}
    best = max(scores, key=lambda s: scores[s])
    log.info("validation Parzen LL by sample scale: %s; keeping %g", scores, best)
    return dataclasses.replace(model, sample_scale=best), scores


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate(
    g: nn.Module,
    mcfg: ModelConfig,
    mnist: dict[str, np.ndarray],
    classifier: Path,
    *,
    samples: int,
    sigma_grid: list[float],
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """The test protocol on `samples` digits (1/10 per class): Parzen LL, Frechet distance, conditional
    accuracy; with a truncated noise spread, also the same weights' untruncated numbers."""
    from tagan.mnist.evaluation import evaluate_generator
    from tagan.models.mnist import load_classifier

    t0 = time.perf_counter()
    labels = balanced_labels(samples)
    judge = load_classifier(classifier, device)
    grid = np.asarray(sigma_grid)
    images = generate(g, mcfg, labels, seed + 12345).numpy()  # (N, 28, 28) in [0, 1]
    metrics = evaluate_generator(images, labels.numpy(), mnist, judge, grid, device)
    if mcfg.sample_scale != 1.0:  # the same weights sampled as trained, beside the truncated headline
        plain = generate(g, dataclasses.replace(mcfg, sample_scale=1.0), labels, seed + 12345).numpy()
        untruncated = evaluate_generator(plain, labels.numpy(), mnist, judge, grid, device)
        metrics.update({f"untruncated_{k}": untruncated[k] for k in UNTRUNCATED_KEYS})
    metrics["eval_total_seconds"] = round(time.perf_counter() - t0, 1)
    return metrics
