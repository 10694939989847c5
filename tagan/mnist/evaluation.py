"""Shared evaluation of MNIST generators (used by the mnist_cgan and dcgan stages).

Protocol (Goodfellow et al. 2014, as used by Mirza & Osindero 2014): a Gaussian Parzen window on
the generated samples (10,000; for a CGAN 1000 per class), sigma chosen by grid search on the
validation split, log-likelihood reported as mean and standard error over the 10,000 test images,
in nats, pixels in [0, 1]. Next to it, from the mnist_classifier stage's CNN: the share of samples
classified as their conditioning label, and a Frechet distance on its penultimate features
(generated vs real test images) beside the same distance for as many real training images (the floor).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from tagan.metrics import frechet_distance, parzen_log_likelihood, select_parzen_sigma
from tagan.models.mnist import MnistClassifier, infer

log = logging.getLogger(__name__)

# Parzen window widths searched on validation: Goodfellow et al.'s logspace(-1, 0, 10) cut to its useful lower half
# (the best sigma for MNIST samples is ~0.18), with 0.01 steps near the optimum (worth 2-4 nats over 0.17 / 0.2)
SIGMA_GRID = [0.05, 0.07, 0.1, 0.12, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2, 0.22, 0.25, 0.3]


def check_samples(samples: np.ndarray) -> np.ndarray:
    """Samples as float32 (N, 28, 28) in [0, 1]; a wrong shape or range is a ValueError."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) == 0:
        raise ValueError(f"samples must be (N, 28, 28) (or (N, 1, 28, 28)), got {np.shape(samples)}")
    if not np.isfinite(x).all() or x.min() < -1e-4 or x.max() > 1 + 1e-4:
        raise ValueError(
            f"samples must lie in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]); map tanh output with (x + 1) / 2"
        )
    return np.clip(x, 0.0, 1.0)


def evaluate_generator(
    samples: np.ndarray,
    sample_labels: np.ndarray | None,
    mnist: dict[str, np.ndarray],
    classifier: MnistClassifier,
    sigma_grid: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    *,
    val_limit: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Flat metrics of generated digits: parzen_ll/se/sigma, fid, fid_real_floor[, conditional_accuracy].

    samples (N, 28, 28) floats in [0, 1]; sample_labels (N,) conditioning labels or None;
    mnist from readers.mnist.load_npz; val_limit caps the validation images used to pick sigma.
    """
    t0 = time.perf_counter()
    x = check_samples(samples)
    n = len(x)
    flat = x.reshape(n, -1)  # (N, 784)
    val = mnist["x_val"][:val_limit].reshape(-1, 784).astype(np.float32) / 255
    test = mnist["x_test"].reshape(-1, 784).astype(np.float32) / 255
    grid = np.asarray(SIGMA_GRID if sigma_grid is None else sigma_grid)
    sigma, curve = select_parzen_sigma(flat, val, grid, device=device)
    log.info(
        "Parzen sigma %.4f (validation LL by sigma: %s)",
        sigma,
        {f"{s:.3f}": round(v, 1) for s, v in curve.items()},
    )
    ll, se = parzen_log_likelihood(flat, test, sigma, device=device)

    feats_gen, logits_gen = infer(classifier, x, device)  # (N, F), (N, 10)
    feats_test, _ = infer(classifier, mnist["x_test"], device)
    real_idx = np.random.default_rng(seed).choice(
        len(mnist["x_train"]), size=min(n, len(mnist["x_train"])), replace=False
    )
    feats_real, _ = infer(classifier, mnist["x_train"][np.sort(real_idx)], device)
    metrics: dict[str, Any] = {
        "parzen_ll": round(ll, 3),
        "parzen_se": round(se, 3),
        "parzen_sigma": round(sigma, 5),
        "fid": round(frechet_distance(feats_gen, feats_test), 4),
        "fid_real_floor": round(frechet_distance(feats_real, feats_test), 4),
        "n_samples": n,
    }
    if sample_labels is not None:
        labels = np.asarray(sample_labels).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"sample_labels has {len(labels)} entries for {n} samples")
        metrics["conditional_accuracy"] = round(float((logits_gen.argmax(1) == labels).mean()), 5)
        # mode collapse within a class shows here: per-pixel std over one digit's samples, beside real digits
        metrics["within_class_std"] = round(within_class_std(x, labels), 4)
        metrics["within_class_std_real"] = round(
            within_class_std(mnist["x_test"] / 255.0, mnist["y_test"]), 4
        )
    metrics["eval_seconds"] = round(time.perf_counter() - t0, 1)
    log.info("evaluation: %s", metrics)
    return metrics


def within_class_std(images: np.ndarray, labels: np.ndarray) -> float:
    """Per-pixel standard deviation over the images of each label, averaged over pixels and labels."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)  # (N, 784)
    return float(np.mean([x[labels == k].std(0).mean() for k in np.unique(labels)]))


def parzen_only(
    samples: np.ndarray,
    data: dict[str, np.ndarray],
    sigma_grid: np.ndarray,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Parzen LL of the test split under `samples` (N, 28, 28), sigma chosen on the validation split (for
    datasets the MNIST classifier cannot judge, such as Fashion-MNIST)."""
    flat = check_samples(samples).reshape(len(samples), -1)  # (N, 784)
    val = data["x_val"].reshape(-1, 784).astype(np.float32) / 255
    sigma, _ = select_parzen_sigma(flat, val, np.asarray(sigma_grid), device=device)
    ll, se = parzen_log_likelihood(
        flat, data["x_test"].reshape(-1, 784).astype(np.float32) / 255, sigma, device=device
    )
    return {"parzen_ll": round(ll, 3), "parzen_se": round(se, 3), "parzen_sigma": sigma}
