"""Stage mnist_cgan: train a conditional GAN on MNIST (preset `paper` or `strong`) and evaluate it.

python -m pipeline.mnist_cgan --preset strong
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import config, training, utils
from tagan.models.mnist_cgan import ModelConfig, build, sample_noise

log = logging.getLogger(__name__)


@dataclass
class Params:
    """One preset of the `mnist_cgan` section (mnist_cgan.paper / mnist_cgan.strong)."""

    seed: int = 0
    arch: Literal["mlp", "conv"] = "conv"
    discriminator: Literal["concat", "projection"] = "projection"
    z_dim: int = 64
    noise: Literal["uniform", "normal"] = "normal"
    g_width: int = 64
    d_width: int = 64
    dropout: float = 0.0
    spectral_norm: bool = True
    loss: Literal["bce", "hinge"] = "bce"  # bce: non-saturating loss on logits
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = 2e-4
    lr_decay: float = 1.0  # lr divided by this factor every step (paper: 1.00004) ...
    lr_min: float = 1e-6  # ... down to this floor
    momentum: float = 0.5  # sgd: momentum at step 0 (paper 0.5) ...
    momentum_final: float = 0.7  # ... rising linearly to this (paper 0.7) ...
    momentum_ramp_steps: int = 1  # ... over this many steps
    betas: tuple[float, float] = (0.5, 0.999)  # adam
    max_norm: float = (
        0.0  # cap on each unit's incoming weight norm after every step (pylearn2's max_col_norm; 0 = off)
    )
    batch_size: int = 64
    steps: int = 3000
    ema_decay: float = 0.0  # exponential moving average of G's weights (0 = off)
    mode_seeking: float = 0.0  # weight of the mode-seeking term (Mao et al. 2019) against collapse (0 = off)
    # noise spreads tried when sampling from the final G; the best validation Parzen LL is kept (1.0 = off)
    sample_scales: list[float] = field(default_factory=lambda: [1.0])
    select_every: int = 0  # model selection: Parzen LL on validation every N steps, keep the best (0 = last)
    select_samples: int = 2000  # generated samples for each model-selection estimate
    select_val_images: int = 2000  # validation images for each model-selection estimate
    eval_samples: int = 10000  # generated samples for the final Parzen / FID (1/10 per class)
    sigma_grid: list[float] = field(default_factory=lambda: [0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3])
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self) -> None:
        for key in ("z_dim", "g_width", "d_width", "lr", "lr_decay", "lr_min", "batch_size", "steps"):
            config.positive(key, getattr(self, key))
        config.in_range("dropout", self.dropout, 0.0, 0.9)
        config.in_range("momentum", self.momentum, 0.0, 1.0)
        config.in_range("momentum_final", self.momentum_final, 0.0, 1.0)
        config.in_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        config.check(
            len(self.sample_scales) > 0 and all(s > 0 for s in self.sample_scales),
            "sample_scales",
            f"must be a non-empty list of positive numbers, got {self.sample_scales}",
        )
        config.check(
            self.mode_seeking >= 0, "mode_seeking", f"must be >= 0 (0 = off), got {self.mode_seeking}"
        )
        config.check(self.max_norm >= 0, "max_norm", f"must be >= 0 (0 = off), got {self.max_norm}")
        config.check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        config.check(
            self.lr_decay >= 1.0, "lr_decay", f"must be >= 1 (a per-step divisor), got {self.lr_decay}"
        )
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
            len(self.sigma_grid) > 0 and all(s > 0 for s in self.sigma_grid),
            "sigma_grid",
            f"must be a non-empty list of positive numbers, got {self.sigma_grid}",
        )
        for key in (
            "momentum_ramp_steps",
            "select_every",
            "checkpoint_every",
            "log_every",
            "select_val_images",
        ):
            config.check(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            arch=self.arch,
            discriminator=self.discriminator,
            z_dim=self.z_dim,
            noise=self.noise,
            g_width=self.g_width,
            d_width=self.d_width,
            dropout=self.dropout,
            spectral_norm=self.spectral_norm,
        )


# ---------------------------------------------------------------------------------------------- losses


def d_loss_fn(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from logits on real and fake batches."""
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.binary_cross_entropy_with_logits(
        real, torch.ones_like(real)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))


def g_loss_fn(loss: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss (non-saturating for bce) from D's logits on fakes."""
    if loss == "hinge":
        return -fake.mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mode-seeking term (Mao et al. 2019): small when G maps distant noise to distant images.

    fake (2h, ...) and z (2h, z_dim) hold pairs: row i and row h + i share a label, not their noise.
    Returns 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2| + eps); minimising it spreads G's samples.
    """
    h = len(z) // 2
    image_gap = (fake[:h] - fake[h : 2 * h]).abs().flatten(1).mean(1)  # (h,)
    noise_gap = (z[:h] - z[h : 2 * h]).abs().mean(1)  # (h,)
    return 1.0 / ((image_gap / noise_gap).mean() + 1e-5)


def schedule(cfg: Params, step: int) -> tuple[float, float]:
    """(lr, momentum) at `step`: exponential lr decay to a floor, linear momentum ramp (the paper's)."""
    lr = max(cfg.lr / cfg.lr_decay**step, cfg.lr_min)
    frac = min(1.0, step / max(1, cfg.momentum_ramp_steps))
    return lr, cfg.momentum + (cfg.momentum_final - cfg.momentum) * frac


def make_optimizer(cfg: Params, params: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)


@torch.no_grad()
def apply_max_norm(module: nn.Module, max_norm: float) -> None:
    """Rescale every Linear unit's incoming weight vector to norm <= max_norm (pylearn2's max_col_norm)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.weight.copy_(torch.renorm(m.weight, p=2, dim=0, maxnorm=max_norm))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (parameters); buffers copied."""
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1 - decay)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


# ---------------------------------------------------------------------------------------------- sampling


@torch.no_grad()
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


# ---------------------------------------------------------------------------------------------- training


def train(
    cfg: Params,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    device: torch.device,
    info: training.DistInfo | None = None,
    select_fn: Callable[[nn.Module], float] | None = None,
    name: str = "mnist_cgan",
) -> tuple[nn.Module, nn.Module, list[dict[str, float]], dict[str, Any]]:
    """Train G and D on images (N, 1, 28, 28) in [0, 1] with labels (N,); returns (G, D, loss rows, info).

    The returned G is the one kept by model selection (`select_fn(G) -> validation score`, higher is
    better, every `select_every` steps) or the last (EMA) G; training resumes from `.resume/`.
    """
    info = info or training.DistInfo()
    mcfg = cfg.model_config()
    utils.seed_everything(cfg.seed)
    g, d = build(mcfg)
    g, d = training.to_device(g, device), training.to_device(d, device)
    ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema_decay > 0 else None
    g_ddp, d_ddp = training.wrap(g, info), training.wrap(d, info)
    opt_g, opt_d = make_optimizer(cfg, g.parameters()), make_optimizer(cfg, d.parameters())
    utils.seed_everything(cfg.seed + 1 + 7919 * info.rank)  # per-rank noise and dropout

    objects: dict[str, Any] = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d}
    if ema is not None:
        objects["ema"] = ema
    ckpt = training.Checkpointer(name, config.to_dict(cfg), cfg.checkpoint_every, info)
    start, extra = ckpt.load(objects)
    rows: list[dict[str, float]] = extra.get("rows", [])
    best = extra.get("best", {"score": -math.inf, "step": -1, "state": None})
    resumed_seconds = elapsed = float(extra.get("train_seconds", 0.0))
    n = len(x_train)
    diverged_at = 0
    t0 = time.perf_counter()

    for step in utils.progress(range(start, cfg.steps), desc=name, total=cfg.steps - start):
        lr, momentum = schedule(cfg, step)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
                if cfg.optimizer == "sgd":
                    group["momentum"] = momentum
        idx = training.batch_indices(n, cfg.batch_size, step, cfg.seed, info)
        x = x_train[idx].to(device, memory_format=torch.channels_last)  # (b, 1, 28, 28)
        y = y_train[idx].to(device)  # (b,)
        # with mode seeking, fakes come in pairs: the second half repeats the first half's labels
        y_fake = torch.cat([y[: len(y) // 2]] * 2) if cfg.mode_seeking else y  # (b',)
        z = sample_noise(len(y_fake), mcfg, device=device)
        fake = torch.sigmoid(g_ddp(z, y_fake))  # (b', 1, 28, 28), G's one forward this step

        d_loss = d_loss_fn(cfg.loss, d_ddp(x, y), d_ddp(fake.detach(), y_fake))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if cfg.max_norm:
            apply_max_norm(d, cfg.max_norm)

        d_fake = d_ddp(fake, y_fake)
        g_loss = g_loss_fn(cfg.loss, d_fake)
        if cfg.mode_seeking:
            g_loss = g_loss + cfg.mode_seeking * mode_seeking_loss(fake, z)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if cfg.max_norm:
            apply_max_norm(g, cfg.max_norm)
        if ema is not None:  # warm-up so that the random initial weights fade out early
            ema_update(ema, g, min(cfg.ema_decay, (1 + step) / (10 + step)))

        done = step + 1
        if not math.isfinite(
            d_loss.item() + g_loss.item()
        ):  # NaN gradients are all-reduced: every rank sees it
            log.warning("training diverged at step %d (non-finite loss); keeping the selected model", done)
            diverged_at = done
            break
        if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
            rows.append({
                "step": done,
                "d_loss": training.mean_across_ranks(d_loss.item(), info),
                "g_loss": training.mean_across_ranks(g_loss.item(), info),
                "d_fake_prob": training.mean_across_ranks(torch.sigmoid(d_fake).mean().item(), info),
                "lr": lr,
            })  # fmt: skip
        if select_fn is not None and cfg.select_every and (done % cfg.select_every == 0 or done == cfg.steps):
            sampler = ema if ema is not None else g
            score = select_fn(sampler) if info.is_main else 0.0
            score = training.mean_across_ranks(score, info) * info.world_size  # rank 0's value everywhere
            log.info("step %d: validation Parzen LL %.1f", done, score)
            if math.isfinite(score) and score > best["score"]:
                best = {"score": score, "step": done, "state": copy.deepcopy(sampler.state_dict())}
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            extra = {"rows": rows, "best": best, "train_seconds": elapsed + time.perf_counter() - t0}
            ckpt.save(done, objects, extra)

    elapsed += time.perf_counter() - t0
    final = ema if ema is not None else g
    if diverged_at and best["state"] is None:
        raise utils.UserError(
            f"{name}: training diverged at step {diverged_at} before any model selection; "
            "lower lr, set max_norm, or set select_every below the divergence step"
        )
    if best["state"] is not None:
        final = copy.deepcopy(final)
        final.load_state_dict(best["state"])
    final.eval()
    result = {
        "train_seconds": elapsed,
        "steps_per_second": (cfg.steps - start) / max(elapsed - resumed_seconds, 1e-9),
        "selected_step": best["step"] if best["state"] is not None else cfg.steps,
        "diverged_at_step": diverged_at,
        "selected_val_parzen": best["score"] if best["state"] is not None else float("nan"),
        "checkpointer": ckpt,
    }
    return final, d, rows, result


# ---------------------------------------------------------------------------------------------- stage


UNTRUNCATED_KEYS = (
    "parzen_ll",
    "parzen_se",
    "parzen_sigma",
    "fid",
    "conditional_accuracy",
    "within_class_std",
)


def parzen_selector(cfg: Params, x_val: np.ndarray, device: torch.device) -> Callable[..., float]:
    """Model-selection score `score(G, mcfg=None)`: best mean validation Parzen LL over the sigma grid."""
    from tagan.metrics import select_parzen_sigma

    val = x_val[: cfg.select_val_images].reshape(-1, 784).astype(np.float32) / 255  # (M, 784)
    labels = balanced_labels(cfg.select_samples)

    def score(g: nn.Module, mcfg: ModelConfig | None = None) -> float:
        mcfg = mcfg or cfg.model_config()
        samples = generate(g, mcfg, labels, cfg.seed + 4242).reshape(-1, 784).numpy()  # (N, 784)
        sigma, curve = select_parzen_sigma(samples, val, np.asarray(cfg.sigma_grid), device=device)
        return curve[sigma]

    return score


def choose_sample_scale(
    cfg: Params, g: nn.Module, scorer: Callable[..., float]
) -> tuple[ModelConfig, dict[float, float]]:
    """G's ModelConfig with the noise spread of `cfg.sample_scales` that scores best on validation.

    Returns (config, {scale: validation Parzen LL}); the scores are empty when there is one scale only.
    """
    mcfg = cfg.model_config()
    if len(cfg.sample_scales) == 1:
        return dataclasses.replace(mcfg, sample_scale=cfg.sample_scales[0]), {}
    scores = {s: scorer(g, dataclasses.replace(mcfg, sample_scale=s)) for s in cfg.sample_scales}
    best = max(scores, key=lambda s: scores[s])
    log.info("validation Parzen LL by sample scale: %s; keeping %g", scores, best)
    return dataclasses.replace(mcfg, sample_scale=best), scores


def run(
    cfg: Params,
    runtime: config.Runtime,
    data: Path,
    classifier: Path,
    model_out: Path,
    metrics_out: Path,
    plot_out: Path,
    samples_png: Path,
    name: str = "mnist_cgan",
) -> dict[str, Any]:
    """Train one preset, write checkpoint / loss CSV / digit grid, and return + write its metrics."""
    from tagan.mnist_eval import evaluate_generator
    from tagan.models.mnist import load_classifier
    from tagan.readers.mnist import load_npz

    device, info = training.setup(runtime)
    mnist = load_npz(data)
    if not classifier.exists():
        raise utils.UserError(f"{classifier} not found; build it with `dvc repro mnist_classifier`")
    x_train = torch.from_numpy(mnist["x_train"].astype(np.float32) / 255).unsqueeze(1)  # (N, 1, 28, 28)
    y_train = torch.from_numpy(mnist["y_train"].astype(np.int64))  # (N,)
    scorer = parzen_selector(cfg, mnist["x_val"], device)
    g, _, rows, result = train(
        cfg, x_train, y_train, device, info, scorer if cfg.select_every else None, name
    )
    ckpt: training.Checkpointer = result.pop("checkpointer")
    metrics: dict[str, Any] = {}
    if info.is_main:
        g = training.unwrap(g).eval()
        mcfg, by_scale = choose_sample_scale(cfg, g, scorer)
        utils.save_checkpoint(
            model_out,
            {"model": mcfg.to_dict(), "params": config.to_dict(cfg)},
            g.state_dict(),
            selected_step=result["selected_step"],
        )
        utils.write_csv(plot_out, rows)
        save_digit_grid(samples_png, g, mcfg, cfg.seed + 7)
        t0 = time.perf_counter()
        labels = balanced_labels(cfg.eval_samples)  # 1/10 of the samples per digit
        samples = generate(g, mcfg, labels, cfg.seed + 12345).numpy()  # (N, 28, 28) in [0, 1]
        judge = load_classifier(classifier, device)
        metrics = evaluate_generator(
            samples, labels.numpy(), mnist, judge, np.asarray(cfg.sigma_grid), device
        )
        if mcfg.sample_scale != 1.0:  # the same weights sampled as trained, beside the truncated headline
            plain = generate(g, dataclasses.replace(mcfg, sample_scale=1.0), labels, cfg.seed + 12345)
            untruncated = evaluate_generator(
                plain.numpy(), labels.numpy(), mnist, judge, np.asarray(cfg.sigma_grid), device
            )
            metrics.update({f"untruncated_{k}": untruncated[k] for k in UNTRUNCATED_KEYS})
        metrics.update({
            "steps": cfg.steps,
            "selected_step": result["selected_step"],
            "diverged_at_step": result["diverged_at_step"],
            "train_seconds": round(result["train_seconds"], 1),
            "steps_per_second": round(result["steps_per_second"], 3),
            "eval_total_seconds": round(time.perf_counter() - t0, 1),
        })  # fmt: skip
        if math.isfinite(result["selected_val_parzen"]):
            metrics["selected_val_parzen"] = round(result["selected_val_parzen"], 3)
        metrics["sample_scale"] = mcfg.sample_scale
        metrics.update({f"val_parzen_at_scale_{s:g}": round(v, 3) for s, v in by_scale.items()})
        utils.write_json(metrics_out, metrics)
    ckpt.finish()
    return metrics


def load_generator(path: Path | str, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Rebuild a trained generator from its checkpoint (eval mode) and its ModelConfig."""
    state = utils.load_checkpoint(path, device)
    mcfg = ModelConfig(**state["config"]["model"])
    g, _ = build(mcfg)
    g.load_state_dict(state["state_dict"])
    return g.to(device).eval(), mcfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=["paper", "strong"], default="strong")
    ap.add_argument("--data", type=Path, default=Path("data/mnist/mnist.npz"))
    ap.add_argument("--classifier", type=Path, default=Path("data/models/mnist_classifier.pt"))
    ap.add_argument("--model", type=Path)
    ap.add_argument("--metrics", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--samples", type=Path)
    args = ap.parse_args()
    p = args.preset
    cfg, runtime = config.load_stage(Params, f"mnist_cgan.{p}")
    run(
        cfg,
        runtime,
        args.data,
        args.classifier,
        args.model or Path(f"data/models/mnist_cgan_{p}.pt"),
        args.metrics or Path(f"metrics/mnist_cgan_{p}.json"),
        args.plot or Path(f"plots/mnist_cgan_{p}_loss.csv"),
        args.samples or Path(f"reports/mnist_cgan_{p}_samples.png"),
        name=f"mnist_cgan_{p}",
    )


if __name__ == "__main__":
    utils.stage_main(main)
