"""Stage dcgan: train a DCGAN on 32x32 padded MNIST, then use its D as a feature extractor (linear SVM).

python -m pipeline.dcgan --data data/mnist/mnist.npz --classifier data/models/mnist_classifier.pt ...
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import config, training, utils
from tagan.mnist_eval import evaluate_generator
from tagan.models.dcgan import Discriminator, ModelConfig, build
from tagan.models.mnist import load_classifier
from tagan.readers.mnist import load_npz

log = logging.getLogger(__name__)


@dataclass
class Params:
    """The `dcgan` section of params.yaml."""

    dataset: Literal["mnist", "fashion"] = "mnist"  # the path comes from dvc.yaml: data/mnist/<dataset>.npz
    seed: int = 0
    z_dim: int = 100
    g_width: int = 64
    d_width: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 64
    steps: int = 2500
    svm_labels_per_class: int = (
        100  # labelled training images per digit for the SVM (paper protocol: 1000 total)
    )
    svm_c_grid: list[float] = field(
        default_factory=lambda: [0.0001, 0.0003, 0.001, 0.003, 0.01]
    )  # C by 5-fold CV on them
    svm_scaling: Literal["none", "standard"] = "none"  # standard: z-score every feature before the SVM
    feature_grid: int = 4  # D's conv features max-pooled to grid x grid
    eval_samples: int = 10000
    sigma_grid: list[float] = field(default_factory=lambda: [0.08, 0.1, 0.12, 0.14, 0.17, 0.2, 0.25, 0.3])
    walk_rows: int = 8
    walk_steps: int = 10
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        for key in (
            "z_dim",
            "g_width",
            "d_width",
            "lr",
            "batch_size",
            "steps",
            "svm_labels_per_class",
            "feature_grid",
            "eval_samples",
            "walk_rows",
            "walk_steps",
        ):
            config.positive(key, getattr(self, key))
        config.check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        config.check(
            len(self.svm_c_grid) > 0 and all(c > 0 for c in self.svm_c_grid),
            "svm_c_grid",
            f"must be a non-empty list of positive numbers, got {self.svm_c_grid}",
        )
        config.check(
            len(self.sigma_grid) > 0 and all(s > 0 for s in self.sigma_grid),
            "sigma_grid",
            f"must be a non-empty list of positive numbers, got {self.sigma_grid}",
        )
        config.check(
            self.checkpoint_every >= 0 and self.log_every >= 0,
            "checkpoint_every",
            "checkpoint_every and log_every must be >= 0",
        )

    def model_config(self) -> ModelConfig:
        return ModelConfig(z_dim=self.z_dim, g_width=self.g_width, d_width=self.d_width)


def to_dcgan_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [-1, 1], zero-padded by 2 pixels (background -1)."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 127.5 - 1.0).unsqueeze(1)  # (N, 1, 28, 28)
    return F.pad(x, (2, 2, 2, 2), value=-1.0)  # (N, 1, 32, 32)


def to_unit_28(images: torch.Tensor) -> np.ndarray:
    """G's (N, 1, 32, 32) in [-1, 1] -> centre crop (N, 28, 28) in [0, 1] for the MNIST evaluation."""
    return ((images[:, 0, 2:30, 2:30].clamp(-1, 1) + 1) / 2).numpy()


@torch.no_grad()
def generate(g: nn.Module, z: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """G(z) in eval mode, in batches: (N, 1, 32, 32) on the CPU."""
    was_training = g.training
    g.eval()
    device = training.module_device(g)
    out = torch.cat([g(z[i : i + batch].to(device)).cpu() for i in range(0, len(z), batch)])
    g.train(was_training)
    return out


@torch.no_grad()
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
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(train_x, train_y)
    acc = float((search.predict(test_x) == test_y).mean())
    return acc, float(search.best_params_["linearsvc__C"])


def write_walk_png(path: Path, g: nn.Module, z_dim: int, rows: int, steps: int, seed: int) -> None:
    """Latent walk: each row interpolates linearly between two random z (fixed by `seed`)."""
    gen = torch.Generator().manual_seed(seed)
    ends = torch.randn(rows, 2, z_dim, generator=gen)  # (rows, 2, z)
    t = torch.linspace(0, 1, steps)[None, :, None]  # (1, steps, 1)
    z = (ends[:, :1] * (1 - t) + ends[:, 1:] * t).reshape(-1, z_dim)  # (rows * steps, z)
    images = to_unit_28(generate(g, z))  # (rows * steps, 28, 28)
    utils.write_grid_png(path, images.reshape(rows, steps, 28, 28))


def train(
    cfg: Params, x_train: torch.Tensor, device: torch.device, info: training.DistInfo | None = None
) -> tuple[nn.Module, Discriminator, list[dict[str, float]], dict[str, Any]]:
    """Train the DCGAN on images (N, 1, 32, 32) in [-1, 1]; resumable from `.resume/`."""
    info = info or training.DistInfo()
    mcfg = cfg.model_config()
    utils.seed_everything(cfg.seed)
    g, d = build(mcfg)
    g, d = training.to_device(g, device), training.to_device(d, device)
    g_ddp, d_ddp = training.wrap(g, info), training.wrap(d, info)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    utils.seed_everything(cfg.seed + 1 + 7919 * info.rank)  # per-rank noise

    objects: dict[str, Any] = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d}
    ckpt = training.Checkpointer("dcgan", config.to_dict(cfg), cfg.checkpoint_every, info)
    start, extra = ckpt.load(objects)
    rows: list[dict[str, float]] = extra.get("rows", [])
    resumed_seconds = float(extra.get("train_seconds", 0.0))
    n = len(x_train)
    t0 = time.perf_counter()
    bce = nn.BCEWithLogitsLoss()
    for step in utils.progress(range(start, cfg.steps), desc="dcgan", total=cfg.steps - start):
        idx = training.batch_indices(n, cfg.batch_size, step, cfg.seed, info)
        x = x_train[idx].to(device, memory_format=torch.channels_last)  # (b, 1, 32, 32)
        z = torch.randn(len(x), cfg.z_dim, device=device)
        fake = g_ddp(z)  # (b, 1, 32, 32)

        d_real, d_fake = d_ddp(x), d_ddp(fake.detach())  # separate batches: BN never mixes real and fake
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        d_gen = d_ddp(fake)
        g_loss = bce(d_gen, torch.ones_like(d_gen))  # non-saturating
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        done = step + 1
        if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
            rows.append({
                "step": done,
                "d_loss": training.mean_across_ranks(d_loss.item(), info),
                "g_loss": training.mean_across_ranks(g_loss.item(), info),
                "d_real_prob": training.mean_across_ranks(torch.sigmoid(d_real).mean().item(), info),
                "d_fake_prob": training.mean_across_ranks(torch.sigmoid(d_fake).mean().item(), info),
            })  # fmt: skip
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            ckpt.save(
                done, objects, {"rows": rows, "train_seconds": resumed_seconds + time.perf_counter() - t0}
            )
    elapsed = time.perf_counter() - t0
    result = {
        "train_seconds": resumed_seconds + elapsed,
        "steps_per_second": (cfg.steps - start) / max(elapsed, 1e-9),
        "checkpointer": ckpt,
    }
    return g, d, rows, result


def run(
    cfg: Params,
    runtime: config.Runtime,
    data: Path,
    classifier: Path,
    model_out: Path,
    metrics_out: Path,
    plot_out: Path,
    samples_png: Path,
    walk_png: Path,
) -> dict[str, Any]:
    """Train the DCGAN, write checkpoint/plots/PNGs, evaluate (SVM on D features + baselines, Parzen, FID)."""
    device, info = training.setup(runtime)
    mnist = load_npz(data)
    if cfg.dataset == "mnist" and not classifier.exists():
        raise utils.UserError(f"{classifier} not found; build it with `dvc repro mnist_classifier`")
    x_train = to_dcgan_input(mnist["x_train"])  # (N, 1, 32, 32)
    g, d, rows, result = train(cfg, x_train, device, info)
    ckpt: training.Checkpointer = result.pop("checkpointer")
    metrics: dict[str, Any] = {}
    if info.is_main:
        g, d = training.unwrap(g).eval(), training.unwrap(d).eval()
        mcfg = cfg.model_config()
        utils.save_checkpoint(
            model_out,
            {"model": mcfg.to_dict(), "params": config.to_dict(cfg)},
            {"g": g.state_dict(), "d": d.state_dict()},
        )
        utils.write_csv(plot_out, rows)
        t0 = time.perf_counter()
        z = torch.randn(
            cfg.eval_samples, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345)
        )
        samples = to_unit_28(generate(g, z))  # (N, 28, 28) in [0, 1]
        z_grid = torch.randn(
            100, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 7)
        )  # fixed noise
        utils.write_grid_png(samples_png, to_unit_28(generate(g, z_grid)).reshape(10, 10, 28, 28))
        write_walk_png(walk_png, g, cfg.z_dim, cfg.walk_rows, cfg.walk_steps, cfg.seed + 777)

        metrics.update(svm_metrics(cfg, d, mnist, device))
        if cfg.dataset == "mnist":
            judge = load_classifier(classifier, device)
            metrics.update(
                evaluate_generator(samples, None, mnist, judge, np.asarray(cfg.sigma_grid), device)
            )
        else:  # the MNIST classifier means nothing on clothes: Parzen LL only
            metrics.update(parzen_only(samples, mnist, cfg.sigma_grid, device))
        metrics.update({
            "steps": cfg.steps,
            "train_seconds": round(result["train_seconds"], 1),
            "steps_per_second": round(result["steps_per_second"], 3),
            "eval_total_seconds": round(time.perf_counter() - t0, 1),
        })  # fmt: skip
        utils.write_json(metrics_out, metrics)
    ckpt.finish()
    return metrics


def svm_metrics(
    cfg: Params, d: Discriminator, mnist: dict[str, np.ndarray], device: torch.device
) -> dict[str, float]:
    """SVM accuracy on the test set from trained-D features, raw pixels and a randomly initialised D."""
    idx = labelled_subset(mnist["y_train"], cfg.svm_labels_per_class, cfg.seed)
    x_lab, y_lab = to_dcgan_input(mnist["x_train"][idx]), mnist["y_train"][idx]
    x_test, y_test = to_dcgan_input(mnist["x_test"]), mnist["y_test"]
    torch.manual_seed(cfg.seed + 99)  # the random-D baseline: same architecture, fresh N(0, 0.02) weights
    d_random = Discriminator(cfg.model_config()).to(device)
    out: dict[str, float] = {}
    candidates = {
        "svm_dcgan": lambda x: extract_features(d, x, cfg.feature_grid),
        "svm_random_d": lambda x: extract_features(d_random, x, cfg.feature_grid),
        "svm_raw_pixels": lambda x: x.flatten(1).numpy(),
    }
    for name, featurize in candidates.items():
        t0 = time.perf_counter()
        acc, c = svm_accuracy(
            featurize(x_lab), y_lab, featurize(x_test), y_test, cfg.svm_c_grid, cfg.seed, cfg.svm_scaling
        )
        out[f"{name}_accuracy"] = round(acc, 5)
        out[f"{name}_c"] = c
        log.info("%s: test accuracy %.4f (C=%g, %.1fs)", name, acc, c, time.perf_counter() - t0)
    out["svm_labels"] = len(idx)
    return out


def parzen_only(
    samples: np.ndarray, data: dict[str, np.ndarray], sigma_grid: list[float], device: torch.device
) -> dict[str, float]:
    """Parzen LL of the test split under `samples` (N, 28, 28), sigma chosen on the validation split."""
    from tagan.metrics import parzen_log_likelihood, select_parzen_sigma

    flat = samples.reshape(len(samples), -1)  # (N, 784)
    val = data["x_val"].reshape(-1, 784).astype(np.float32) / 255
    sigma, _ = select_parzen_sigma(flat, val, np.asarray(sigma_grid), device=device)
    ll, se = parzen_log_likelihood(
        flat, data["x_test"].reshape(-1, 784).astype(np.float32) / 255, sigma, device=device
    )
    return {"parzen_ll": round(ll, 3), "parzen_se": round(se, 3), "parzen_sigma": sigma}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/mnist/mnist.npz"))
    ap.add_argument("--classifier", type=Path, default=Path("data/models/mnist_classifier.pt"))
    ap.add_argument("--model", type=Path, default=Path("data/models/dcgan.pt"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/dcgan.json"))
    ap.add_argument("--plot", type=Path, default=Path("plots/dcgan_loss.csv"))
    ap.add_argument("--samples", type=Path, default=Path("reports/dcgan_samples.png"))
    ap.add_argument("--walk", type=Path, default=Path("reports/dcgan_walk.png"))
    args = ap.parse_args()
    cfg, runtime = config.load_stage(Params, "dcgan")
    run(
        cfg, runtime, args.data, args.classifier, args.model, args.metrics, args.plot, args.samples, args.walk
    )


if __name__ == "__main__":
    utils.stage_main(main)
