"""The DCGAN on MNIST around its networks: 32x32 inputs, sampling, and D as a feature extractor.

The feature protocol (Radford et al. 2016, Sec. 5.1): every conv layer of the trained D max-pooled
to a small grid, a linear L2-SVM on 1000 labelled training images, test accuracy; beside it the same
SVM on raw pixels and on a randomly initialised D of the same architecture.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import training, utils
from tagan.models.dcgan import Discriminator, ModelConfig

log = logging.getLogger(__name__)


def to_dcgan_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [-1, 1], zero-padded by 2 pixels (background -1)."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1.0).unsqueeze(1)  # (N, 1, 28, 28)
    return F.pad(x, (2, 2, 2, 2), value=-1.0)  # (N, 1, 32, 32)


def to_unit_28(images: torch.Tensor) -> np.ndarray:
    """G's (N, 1, 32, 32) in [-1, 1] -> centre crop (N, 28, 28) in [0, 1] for the MNIST evaluation."""
    return ((images[:, 0, 2:30, 2:30].clamp(-1, 1) + 1) / 2).numpy()


def fixed_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n noise vectors (n, z_dim) from their own generator seeded by `seed`."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def generate(g: nn.Module, z: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """G(z) in eval mode, in batches: (N, 1, 32, 32) on the CPU."""
    was_training = g.training
    g.eval()
    device = training.module_device(g)
    out = torch.cat([g(z[i : i + batch].to(device)).cpu() for i in range(0, len(z), batch)])
    g.train(was_training)
    return out


def write_walk_png(path: Path, g: nn.Module, z_dim: int, rows: int, steps: int, seed: int) -> None:
    """Latent walk: each row interpolates linearly between two random z (fixed by `seed`)."""
    ends = fixed_noise(rows * 2, z_dim, seed).view(rows, 2, z_dim)  # (rows, 2, z)
    t = torch.linspace(0, 1, steps)[None, :, None]  # (1, steps, 1)
    z = (ends[:, :1] * (1 - t) + ends[:, 1:] * t).reshape(-1, z_dim)  # (rows * steps, z)
    images = to_unit_28(generate(g, z))  # (rows * steps, 28, 28)
    utils.write_grid_png(path, images.reshape(rows, steps, 28, 28))


@torch.inference_mode()
def extract_features(d: Discriminator, images: torch.Tensor, grid: int, batch: int = 1000) -> np.ndarray:
    """D's pooled conv features (N, F) of images (N, 1, 32, 32), D in eval mode."""
    was_training = d.training
    d.eval()
    device = training.module_device(d)
    feats = torch.cat(
        [d.features(images[i : i + batch].to(device), grid).cpu() for i in range(0, len(images), batch)]
    )
    d.train(was_training)
    return feats.numpy()


def labelled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of `per_class` examples of every digit, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    picks = []
    for digit in range(10):
        pool = np.flatnonzero(labels == digit)
        if len(pool) < per_class:
            raise utils.UserError(
                f"only {len(pool)} training images of digit {digit}; lower dcgan.svm_labels_per_class"
            )
        picks.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def svm_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c_grid: list[float],
    seed: int,
    scaling: str = "none",
) -> tuple[float, float]:
    """Linear L2-SVM (squared hinge), C by 5-fold CV on the training set: (test accuracy, C).

    scaling "standard" z-scores every feature first; "none" keeps the features as they are (with a few
    thousand features and 1000 images, z-scoring blows up near-dead features into noise).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if scaling == "none" and train_x.shape[1] > train_x.shape[0]:
        # the SVM's weights lie in the span of its training features (representer theorem; every CV fold's
        # too), so fitting in an orthonormal basis of that span gives the same classifier: 7168 -> 1000
        # features for 1000 images, about 6x faster
        basis = np.linalg.svd(train_x.astype(np.float64), full_matrices=False)[2]  # (N, F), orthonormal rows
        train_x, test_x = train_x @ basis.T, test_x @ basis.T  # (N, N), (M, N)
    svm = LinearSVC(loss="squared_hinge", dual="auto", max_iter=5000, random_state=seed)
    model = make_pipeline(StandardScaler() if scaling == "standard" else "passthrough", svm)
    folds = StratifiedKFold(n_splits=min(5, int(np.bincount(train_y).min())), shuffle=True, random_state=seed)
    search = GridSearchCV(model, {"linearsvc__C": list(c_grid)}, cv=folds, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(train_x, train_y)
    acc = float((search.predict(test_x) == test_y).mean())
    return acc, float(search.best_params_["linearsvc__C"])


def svm_metrics(
    d: Discriminator,
    model: ModelConfig,
    mnist: dict[str, np.ndarray],
    *,
    labels_per_class: int,
    c_grid: list[float],
    scaling: str,
    grid: int,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """SVM accuracy on the test set from trained-D features, raw pixels and a randomly initialised D."""
    idx = labelled_subset(mnist["y_train"], labels_per_class, seed)
    x_lab, y_lab = to_dcgan_input(mnist["x_train"][idx]), mnist["y_train"][idx]
    x_test, y_test = to_dcgan_input(mnist["x_test"]), mnist["y_test"]
    torch.manual_seed(seed + 99)  # the random-D baseline: same architecture, fresh N(0, 0.02) weights
    d_random = Discriminator(model).to(device)
    out: dict[str, float] = {}
    candidates = {
        "svm_dcgan": lambda x: extract_features(d, x, grid),
        "svm_random_d": lambda x: extract_features(d_random, x, grid),
        "svm_raw_pixels": lambda x: x.flatten(1).numpy(),
    }
    for name, featurize in candidates.items():
        t0 = time.perf_counter()
        acc, c = svm_accuracy(featurize(x_lab), y_lab, featurize(x_test), y_test, c_grid, seed, scaling)
        out[f"{name}_accuracy"] = round(acc, 5)
        out[f"{name}_c"] = c
        log.info("%s: test accuracy %.4f (C=%g, %.1fs)", name, acc, c, time.perf_counter() - t0)
    out["svm_labels"] = len(idx)
    return out
