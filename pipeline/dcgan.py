"""Stage dcgan: train a DCGAN on 32x32 padded MNIST or Fashion-MNIST, then use its D as a feature extractor.

python -m pipeline.dcgan --dataset mnist --data data/mnist/mnist.npz --classifier data/models/mnist_classifier.pt ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagan import config, errors, gan, stage, training, utils
from tagan.mnist.dcgan import fixed_noise, generate, svm_metrics, to_dcgan_input, to_unit_28, write_walk_png
from tagan.mnist.evaluation import SIGMA_GRID, evaluate_generator, parzen_only
from tagan.models.dcgan import ModelConfig, build, valid_layers
from tagan.models.mnist import load_classifier
from tagan.readers.mnist import load_npz


@dataclass
class Params:
    """The `dcgan` section of params.yaml."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: gan.OptimConfig = field(default_factory=gan.OptimConfig)
    train: gan.TrainConfig = field(default_factory=gan.TrainConfig)
    svm_labels_per_class: int = 100  # labelled training images per digit for the SVM (paper: 1000 total)
    svm_c_grid: list[float] = field(
        default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
    )  # C by 5-fold CV on the labelled images
    svm_scaling: Literal["none", "unit", "standard"] = "unit"  # unit: one divisor, mean squared norm 1
    feature_grid: int = 4  # D's conv features max-pooled to grid x grid
    feature_layers: list[int] = field(default_factory=lambda: [2, 3])  # headline: D's conv layers (1-based)
    eval_samples: int = 10000
    sigma_grid: list[float] = field(default_factory=lambda: list(SIGMA_GRID))
    walk_rows: int = 8
    walk_steps: int = 10

    def __post_init__(self) -> None:
        for key in ("svm_labels_per_class", "feature_grid", "eval_samples", "walk_rows", "walk_steps"):
            config.positive(key, getattr(self, key))
        config.positive_list("svm_c_grid", self.svm_c_grid)
        config.check(
            valid_layers(self.feature_layers),
            "feature_layers",
            f"must be an increasing non-empty subset of [1, 2, 3], got {self.feature_layers}",
        )
        config.positive_list("sigma_grid", self.sigma_grid)


Dataset = Literal["mnist", "fashion"]


def run(
    cfg: Params,
    runtime: config.Runtime,
    dataset: Dataset,
    data: Path,
    classifier: Path,
    model_out: Path,
    metrics_out: Path,
    plot_out: Path,
    samples_png: Path,
    walk_png: Path,
) -> dict[str, Any]:
    """Train the DCGAN on `dataset` (read from `data`), evaluate it (SVM on D features + baselines, Parzen; on
    MNIST also the judge's Frechet distance), write checkpoint/plots/PNGs."""
    device, info = training.setup(runtime)
    splits = load_npz(data)  # MNIST or Fashion-MNIST: the same splits and arrays
    if dataset == "mnist" and not classifier.exists():
        raise errors.UserError(f"{classifier} not found; build it with `dvc repro mnist_classifier`")
    task = gan.ImageGANTask(to_dcgan_input(splits["x_train"]).to(device), cfg.model.z_dim)  # (N, 1, 32, 32)

    utils.seed_everything(cfg.seed)
    g, d = (training.to_device(m, device) for m in build(cfg.model))
    fitted = gan.fit(
        task, g, d, cfg.train, cfg.optim, name=f"dcgan_{dataset}", config_dict=config.to_dict(cfg),
        seed=cfg.seed, noise_seed=cfg.seed + 1, info=info,
    )  # fmt: skip

    metrics: dict[str, Any] = {}
    if info.is_main:
        g, d = fitted.g, fitted.d.eval()
        t0 = time.perf_counter()
        samples = to_unit_28(generate(g, fixed_noise(cfg.eval_samples, cfg.model.z_dim, cfg.seed + 12345)))
        metrics.update(svm_metrics(
            d, cfg.model, splits, labels_per_class=cfg.svm_labels_per_class, c_grid=cfg.svm_c_grid,
            scaling=cfg.svm_scaling, grid=cfg.feature_grid, layers=cfg.feature_layers, seed=cfg.seed,
            device=device, n_jobs=runtime.num_threads or -1,  # the SVM fits on as many cores as torch
        ))  # fmt: skip
        if dataset == "mnist":
            judge = load_classifier(classifier, device)
            metrics.update(
                evaluate_generator(samples, None, splits, judge, np.asarray(cfg.sigma_grid), device)
            )
        else:  # the MNIST classifier means nothing on clothes: Parzen LL only
            metrics.update(parzen_only(samples, splits, np.asarray(cfg.sigma_grid), device))
        metrics.update({
            "steps": cfg.train.steps,
            "train_seconds": round(fitted.train_seconds, 1),
            "steps_per_second": round(fitted.steps_per_second, 3),
            "eval_total_seconds": round(time.perf_counter() - t0, 1),
        })  # fmt: skip

        fitted.save(
            model_out, {"model": cfg.model.to_dict(), "params": config.to_dict(cfg), "dataset": dataset},
            {"g": g.state_dict(), "d": d.state_dict()}, plot_out, metrics_out, metrics,
        )  # fmt: skip
        grid = fixed_noise(100, cfg.model.z_dim, cfg.seed + 7)
        utils.write_grid_png(samples_png, to_unit_28(generate(g, grid)).reshape(10, 10, 28, 28))
        write_walk_png(walk_png, g, cfg.model.z_dim, cfg.walk_rows, cfg.walk_steps, cfg.seed + 777)
    fitted.finish()
    return metrics


def main() -> None:
    stage.main(run, Params, "dcgan")


if __name__ == "__main__":
    main()
