"""Stage mnist_cgan: train a conditional GAN on MNIST (preset `paper` or `strong`) and evaluate it.

python -m pipeline.mnist_cgan --preset strong
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagan import config, errors, gan, stage, training, utils
from tagan.mnist import mnist_cgan
from tagan.mnist.evaluation import SIGMA_GRID
from tagan.models.mnist_cgan import ModelConfig, build
from tagan.readers.mnist import load_npz


@dataclass
class Params:
    """One preset of the `mnist_cgan` section (mnist_cgan.paper / mnist_cgan.strong)."""

    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: gan.OptimConfig = field(default_factory=gan.OptimConfig)
    train: mnist_cgan.MnistTrainConfig = field(default_factory=mnist_cgan.MnistTrainConfig)
    # noise spreads tried when sampling from the final G; the best validation Parzen LL is kept (1.0 = off)
    sample_scales: list[float] = field(default_factory=lambda: [1.0])
    select_samples: int = 2000  # generated samples for each model-selection estimate
    select_val_images: int = 2000  # validation images for each model-selection estimate
    eval_samples: int = 10000  # generated samples for the final Parzen / FID (1/10 per class)
    sigma_grid: list[float] = field(default_factory=lambda: list(SIGMA_GRID))

    def __post_init__(self) -> None:
        config.check(
            self.model.sample_scale == 1.0,
            "model.sample_scale",
            "is chosen on validation from sample_scales; set those instead",
        )
        config.positive_list("sample_scales", self.sample_scales)
        config.check(
            self.eval_samples >= 10 and self.eval_samples % 10 == 0,
            "eval_samples",
            f"must be a positive multiple of 10 (equal samples per digit), got {self.eval_samples}",
        )
        config.check(
            self.select_samples % 10 == 0 and self.select_samples > 0,
            "select_samples",
            f"must be a positive multiple of 10, got {self.select_samples}",
        )
        config.check(
            self.select_val_images >= 0, "select_val_images", f"must be >= 0, got {self.select_val_images}"
        )
        config.positive_list("sigma_grid", self.sigma_grid)


def run(
    cfg: Params,
    runtime: config.Runtime,
    data: Path,
    classifier: Path,
    model_out: Path,
    metrics_out: Path,
    plot_out: Path,
    samples_png: Path,
    preset: Literal["paper", "strong"] = "strong",
) -> dict[str, Any]:
    """Train one preset, write checkpoint / loss CSV / digit grid, and return + write its metrics."""
    device, info = training.setup(runtime)
    mnist = load_npz(data)
    if not classifier.exists():
        raise errors.UserError(f"{classifier} not found; build it with `dvc repro mnist_classifier`")
    task = mnist_cgan.MnistCGANTask.from_arrays(
        mnist["x_train"], mnist["y_train"], cfg.model, cfg.train.mode_seeking, device
    )
    scorer = mnist_cgan.parzen_selector(
        mnist["x_val"], cfg.model, val_images=cfg.select_val_images, samples=cfg.select_samples,
        sigma_grid=cfg.sigma_grid, seed=cfg.seed, device=device,
    )  # fmt: skip

    utils.seed_everything(cfg.seed)
    g, d = (training.to_device(m, device) for m in build(cfg.model))
    fitted = gan.fit(
        task, g, d, cfg.train, cfg.optim, name=f"mnist_cgan_{preset}", config_dict=config.to_dict(cfg), seed=cfg.seed,
        noise_seed=cfg.seed + 1, info=info, select=scorer if cfg.train.select_every else None,
    )  # fmt: skip

    metrics: dict[str, Any] = {}
    if info.is_main:
        g = fitted.g
        mcfg, by_scale = mnist_cgan.choose_sample_scale(cfg.model, cfg.sample_scales, g, scorer)
        metrics = mnist_cgan.evaluate(
            g, mcfg, mnist, classifier, samples=cfg.eval_samples, sigma_grid=cfg.sigma_grid, seed=cfg.seed,
            device=device,
        )  # fmt: skip
        metrics.update({
            "steps": cfg.train.steps,
            "selected_step": fitted.selected_step,
            "diverged_at_step": fitted.diverged_at_step,
            "train_seconds": round(fitted.train_seconds, 1),
            "steps_per_second": round(fitted.steps_per_second, 3),
            "sample_scale": mcfg.sample_scale,
            **{f"val_parzen_at_scale_{s:g}": round(v, 3) for s, v in by_scale.items()},
        })  # fmt: skip
        if math.isfinite(fitted.selected_score):
            metrics["selected_val_parzen"] = round(fitted.selected_score, 3)

        fitted.save(
            model_out, {"model": mcfg.to_dict(), "params": config.to_dict(cfg)}, g.state_dict(), plot_out,
            metrics_out, metrics, selected_step=fitted.selected_step,
        )  # fmt: skip
        mnist_cgan.save_digit_grid(samples_png, g, mcfg, cfg.seed + 7)
    fitted.finish()
    return metrics


def main() -> None:
    stage.main(run, Params, "mnist_cgan")


if __name__ == "__main__":
    main()
