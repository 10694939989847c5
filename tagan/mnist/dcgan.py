"""The DCGAN on MNIST around its networks: 32x32 inputs, sampling, and D as a feature extractor.

The feature protocol (Radford et al. 2016, Sec. 5.1): every conv layer of the trained D max-pooled
to a small grid, a linear L2-SVM on 1000 labelled training images, test accuracy; beside it the same
SVM on raw pixels and on a randomly initialised D of the same architecture. The headline uses D's
deeper layers only, for both Ds: unscaled, a random D's every-layer features are dominated by its
first layer (a strong random-filter kernel on digits), a trained D's by its deep ones.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import errors, training, utils
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
def extract_features(
    d: Discriminator, images: torch.Tensor, grid: int, layers: Sequence[int] = (1, 2, 3), batch: int = 1000
) -> np.ndarray:
    """D's pooled features (N, F) of conv layers `layers` for images (N, 1, 32, 32), D in eval mode."""
    was_training = d.training
    d.eval()
    device = training.module_device(d)
    feats = torch.cat(
        [
            d.features(images[i : i + batch].to(device), grid, layers).cpu()
            for i in range(0, len(images), batch)
        ]
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
            raise errors.UserError(
                f"only {len(pool)} training images of digit {digit}; lower dcgan.svm_labels_per_class"
            )
        picks.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def unit_scale(train_x: np.ndarray) -> float:
    """The one number that divides features to a mean squared norm of 1 over the training vectors."""
    return float(np.sqrt((np.asarray(train_x, dtype=np.float64) ** 2).sum(1).mean())) or 1.0


def span_basis(x: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """(F, r) orthonormal basis of the span of the rows of x (N, F), r <= N, from the N x N Gram matrix."""
    x = np.asarray(x, dtype=np.float64)
    eigval, eigvec = np.linalg.eigh(x @ x.T)  # X X^T = U diag(s^2) U^T
    keep = eigval > rtol * eigval.max()
    return x.T @ (eigvec[:, keep] / np.sqrt(eigval[keep]))  # V = X^T U S^-1


def svm_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c_grid: list[float],
    seed: int,
    scaling: str = "none",
    dual: bool = False,
    n_jobs: int = 1,
) -> tuple[float, float]:
    """Linear L2-SVM (squared hinge), C by 5-fold CV on the training set: (test accuracy, C).

    scaling "unit" divides all features by one number (`unit_scale`): the same classifiers as "none" with C
    times the mean squared norm, but one C grid then means the same regularisation for feature sets whose
    scales differ 1000-fold (a trained D's deep layers against a random D's); "standard" z-scores every
    feature (with thousands of features and 1000 images it blows near-dead features up into noise).
    dual=False is liblinear's primal Newton solver, whose cost hardly grows with C (the dual one's does).
    n_jobs: processes for the grid search's fits (joblib; -1 = every core), the same result for any n_jobs.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if scaling == "unit":
        scale = unit_scale(train_x)
        train_x, test_x = train_x / scale, test_x / scale
    basis = None
    if scaling != "standard" and train_x.shape[1] > train_x.shape[0]:
        # the SVM's weights (bias included, liblinear treats it as a constant feature) lie in the span of its
        # training features (representer theorem; every CV fold's too), so fitting in an orthonormal basis of
        # that span gives the same classifier: 7168 -> 1000 features for 1000 images, about 6x faster
        basis = span_basis(train_x)  # (F, r)
        train_x = train_x @ basis  # (N, r)
    svm = LinearSVC(loss="squared_hinge", dual=dual, max_iter=5000, random_state=seed)
    model = make_pipeline(StandardScaler() if scaling == "standard" else "passthrough", svm)
    folds = StratifiedKFold(n_splits=min(5, int(np.bincount(train_y).min())), shuffle=True, random_state=seed)
    search = GridSearchCV(model, {"linearsvc__C": list(c_grid)}, cv=folds, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(train_x, train_y)
    if basis is None:
        pred = search.predict(test_x)
    else:  # the weights mapped back to feature space: no need to project the test set
        best = search.best_estimator_[-1]
        scores = test_x @ (basis @ best.coef_.T) + best.intercept_  # (M, K), K = 1 for two classes
        pred = best.classes_[scores.argmax(1) if scores.shape[1] > 1 else (scores[:, 0] > 0).astype(int)]
    acc = float((pred == test_y).mean())
    return acc, float(search.best_params_["linearsvc__C"])


def layer_columns(d: Discriminator, grid: int, layers: Sequence[int]) -> np.ndarray:
    """Column indices of conv layers `layers` (1-based) in D's every-layer features."""
    widths = [block[0].out_channels * grid * grid for block in d.blocks]
    starts = np.cumsum([0, *widths])
    return np.concatenate([np.arange(starts[i - 1], starts[i]) for i in layers])


def svm_metrics(
    d: Discriminator,
    model: ModelConfig,
    data: dict[str, np.ndarray],
    *,
    labels_per_class: int,
    c_grid: list[float],
    scaling: str,
    grid: int,
    layers: Sequence[int],
    seed: int,
    device: torch.device,
    n_jobs: int = 1,
) -> dict[str, float]:
    """Linear-SVM test accuracy on trained-D and random-D features (conv layers `layers`, and all of them,
    the paper's protocol) and on raw pixels, with the chosen C's, mean squared feature norms and margins."""
    idx = labelled_subset(data["y_train"], labels_per_class, seed)
    x_lab, y_lab = to_dcgan_input(data["x_train"][idx]), data["y_train"][idx]
    x_test, y_test = to_dcgan_input(data["x_test"]), data["y_test"]
    torch.manual_seed(seed + 99)  # the random-D baseline: same architecture, fresh N(0, 0.02) weights
    d_random = Discriminator(model).to(device)
    features = {"svm_raw_pixels": (x_lab.flatten(1).numpy(), x_test.flatten(1).numpy())}
    chosen = layer_columns(d, grid, layers)
    for name, net in (("svm_dcgan", d), ("svm_random_d", d_random)):
        lab, test = extract_features(net, x_lab, grid), extract_features(net, x_test, grid)  # every layer
        features[name] = (lab[:, chosen], test[:, chosen])
        features[f"{name}_all_layers"] = (lab, test)
    out: dict[str, float] = {}
    for name, (lab, test) in features.items():
        t0 = time.perf_counter()
        acc, c = svm_accuracy(lab, y_lab, test, y_test, c_grid, seed, scaling, n_jobs=n_jobs)
        out[f"{name}_accuracy"] = round(acc, 5)
        out[f"{name}_c"] = c
        out[f"{name}_sq_norm"] = round(unit_scale(lab) ** 2, 3)  # mean squared norm before any scaling
        log.info("%s (%d features): test accuracy %.4f (C=%g, %.1fs)", name, lab.shape[1], acc, c,
                 time.perf_counter() - t0)  # fmt: skip
        if c in (min(c_grid), max(c_grid)) and len(c_grid) > 1:
            log.warning("%s: cross-validation chose C=%g at the end of svm_c_grid; widen the grid", name, c)
    out["svm_margin_over_random_d"] = round(out["svm_dcgan_accuracy"] - out["svm_random_d_accuracy"], 5)
    out["svm_all_layers_margin_over_random_d"] = round(
        out["svm_dcgan_all_layers_accuracy"] - out["svm_random_d_all_layers_accuracy"], 5
    )
    out["svm_labels"] = len(idx)
    return out
