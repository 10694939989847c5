"""The GAN trainer of every GAN stage (MNIST CGAN, DCGAN, tag CGAN, open CGAN): GANTask and fit.

`fit(task, g, d, train, optim, ...)` runs the alternating D / G steps with the GAN losses (bce: the
non-saturating loss on logits; hinge), SGD with momentum or Adam under the paper's schedule
(exponential lr decay to a floor, linear momentum ramp; constant by default), pylearn2's max-norm
after every step, an EMA of G, model selection (a callback scoring G every N steps, keeping the
best), resumable checkpoints (`tagan.training.Checkpointer`, bit-identical resume), DDP under
torchrun, a stop on divergence, and progress (tqdm on a terminal, a log line per logged row otherwise).

What differs between the GANs is a `GANTask`: how a batch of real data is fetched, how G is called
on it (noise, condition), how D is called, and optional extra loss terms. One step:

    fake = task.generate(G, batch)
    D step:  loss(D(real), D(fake.detach())) [+ task.d_extra]       -> opt_d, max-norm(D)
    G step:  [fake = task.generate(G, batch) when fresh_noise_for_g]
             loss(D(fake)) [+ task.g_extra]                           -> opt_g, max-norm(G), EMA(G)

Speed without changing the arithmetic: D's weights do not need gradients in G's step (skipped), the
D-step fake needs no graph when G draws fresh noise for its own step, foreach optimisers and EMA,
in-place max-norm, and the logged numbers are summed on the device and read once per row.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tagan import errors, training, utils
from tagan.files import write_csv, write_json
from tagan.gan.optim import (
    Loss,
    OptimConfig,
    TrainConfig,
    apply_max_norm,
    d_loss,
    ema_decay_at,
    ema_update,
    g_loss,
    learning_rates,
    make_optimizer,
    max_norm_weights,
    momentum_at,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- task


@dataclass
class Batch:
    """One batch of real data: what D sees as real, the condition, and anything extra terms need."""

    real: torch.Tensor  # (B, ...)
    cond: torch.Tensor | None = None  # (B, ...) labels or image features; None for an unconditional GAN
    target: torch.Tensor | None = None  # (B, ...) e.g. the tag ids of the tag CGAN's auxiliary loss
    cache: dict[str, torch.Tensor] = field(default_factory=dict)  # what a task computes once per step


@dataclass
class Fake:
    """G's output for a batch: samples as D sees them, their condition, the noise, optional logits."""

    samples: torch.Tensor  # (B', ...)
    cond: torch.Tensor | None
    z: torch.Tensor  # (B', z_dim)
    logits: torch.Tensor | None = None


class GANTask:
    """The GAN-specific half of training: subclass it and fill in batch / generate (and what else differs).

    Noise and dropout must come from the global RNG (the resume file restores it).
    """

    fresh_noise_for_g = False  # G's step draws new noise (a second G forward) instead of reusing the D step's

    def __len__(self) -> int:
        """Number of training examples (batches are drawn from range(len))."""
        raise NotImplementedError

    def device(self) -> torch.device:
        """Where the training data lives (batch indices are moved there)."""
        raise NotImplementedError

    def batch(self, idx: torch.Tensor) -> Batch:
        """Real examples at indices `idx` (B,), on the training device."""
        raise NotImplementedError

    def generate(self, g: nn.Module, batch: Batch) -> Fake:
        """G's samples for the batch's conditions."""
        raise NotImplementedError

    def discriminate(self, d: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """D's logits (B,) for examples x under condition cond."""
        return d(x) if cond is None else d(x, cond)

    def d_extra(self, d: nn.Module, batch: Batch, kind: Loss) -> torch.Tensor | None:
        """An extra term of D's loss (None = none)."""
        return None

    def g_extra(self, fake: Fake, batch: Batch) -> torch.Tensor | None:
        """An extra term of G's loss (None = none)."""
        return None


class ImageGANTask(GANTask):
    """An unconditional GAN on images (N, C, H, W) kept on the device: G(z) with z ~ N(0, 1), D(x)."""

    def __init__(self, images: torch.Tensor, z_dim: int) -> None:
        self.images, self.z_dim = images, z_dim

    def __len__(self) -> int:
        return len(self.images)

    def device(self) -> torch.device:
        return self.images.device

    def batch(self, idx: torch.Tensor) -> Batch:
        return Batch(self.images[idx].to(memory_format=torch.channels_last))  # (B, C, H, W)

    def generate(self, g: nn.Module, batch: Batch) -> Fake:
        z = torch.randn(len(batch.real), self.z_dim, device=batch.real.device)  # (B, z_dim)
        return Fake(g(z), None, z)


# ---------------------------------------------------------------------------------------------- trainer


@dataclass
class FitResult:
    """What `fit` returns: G to sample from (the EMA when on, the selected step's weights when model
    selection ran; eval mode), D (the selected step's or the last), the loss rows and timings."""

    g: nn.Module
    d: nn.Module
    rows: list[dict[str, float]]
    selected_step: int
    selected_score: float  # NaN without model selection
    diverged_at_step: int  # 0 = never
    train_seconds: float
    steps_per_second: float
    checkpointer: training.Checkpointer = field(repr=False)

    def final_losses(self) -> dict[str, float]:
        """The last logged row's D and G losses (NaN before the first row)."""
        last = self.rows[-1] if self.rows else {}
        return {
            "final_d_loss": last.get("d_loss", float("nan")),
            "final_g_loss": last.get("g_loss", float("nan")),
        }

    def save(
        self,
        model_path: Path,
        config: dict[str, Any],
        state_dict: dict[str, Any],
        plot_path: Path,
        metrics_path: Path | None = None,
        metrics: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """A GAN stage's outputs (rank 0): the checkpoint with its config, the loss curve, the metrics; atomic."""
        utils.save_checkpoint(model_path, config, state_dict, **extra)
        write_csv(plot_path, self.rows)
        if metrics_path is not None:
            write_json(metrics_path, metrics or {})

    def finish(self) -> None:
        """Drop the resume file once the stage's outputs are written."""
        self.checkpointer.finish()


def set_schedule(
    optim: OptimConfig, step: int, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer
) -> float:
    """Set both optimisers' lr (and SGD momentum) for `step`; returns G's lr."""
    lr_g, lr_d = learning_rates(optim, step)
    momentum = momentum_at(optim, step)
    for opt, lr in ((opt_g, lr_g), (opt_d, lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr
            if optim.optimizer == "sgd":
                group["momentum"] = momentum
    return lr_g


def d_step(
    task: GANTask,
    d: nn.Module,
    opt_d: torch.optim.Optimizer,
    batch: Batch,
    fake: Fake,
    kind: Loss,
    autocast: Callable[[], Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One update of D on the real batch and G's (detached) fakes; returns (loss, D(real), D(fake))."""
    with autocast():
        d_real = task.discriminate(d, batch.real, batch.cond)
        d_fake = task.discriminate(d, fake.samples.detach(), fake.cond)
        loss = d_loss(kind, d_real, d_fake)
        extra = task.d_extra(d, batch, kind)
        if extra is not None:
            loss = loss + extra
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss, d_real, d_fake


def g_step(
    task: GANTask,
    g: nn.Module,
    d: nn.Module,
    opt_g: torch.optim.Optimizer,
    batch: Batch,
    fake: Fake,
    kind: Loss,
    autocast: Callable[[], Any],
) -> torch.Tensor:
    """One update of G against the plain (unwrapped) D; returns G's loss.

    G's step needs D's input gradients only: D's weights skip theirs (they were discarded anyway), and
    the plain D (no DDP) runs so that nothing waits for an all-reduce of D's gradients.
    """
    d_params = list(d.parameters())
    for p in d_params:
        p.requires_grad_(False)
    try:
        with autocast():
            if task.fresh_noise_for_g:
                fake = task.generate(g, batch)
            loss = g_loss(kind, task.discriminate(d, fake.samples, fake.cond))
            extra = task.g_extra(fake, batch)
            if extra is not None:
                loss = loss + extra
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        for p in d_params:
            p.requires_grad_(True)
    opt_g.step()
    return loss


def fit(
    task: GANTask,
    g: nn.Module,
    d: nn.Module,
    train: TrainConfig,
    optim: OptimConfig,
    *,
    name: str,
    config_dict: dict[str, Any],
    seed: int,
    noise_seed: int | None = None,
    info: training.DistInfo | None = None,
    select: Callable[[nn.Module], float] | None = None,
) -> FitResult:
    """Train G and D (already built, on the device) for `train.steps` global steps; resumes from `.resume/`.

    `seed` fixes the batches; `noise_seed`, when given, reseeds every RNG before the loop (plus 7919 per
    rank) for noise and dropout; `config_dict` fingerprints the resume file; `select(G) -> score` (higher
    is better) runs on rank 0 every `train.select_every` steps and at the last step.
    """
    info = info or training.DistInfo()
    ema = copy.deepcopy(g).requires_grad_(False) if train.ema_decay > 0 else None
    g_run, d_run = training.wrap(g, info), training.wrap(d, info)
    lr_g, lr_d = learning_rates(optim, 0)
    opt_g, opt_d = make_optimizer(optim, g.parameters(), lr_g), make_optimizer(optim, d.parameters(), lr_d)
    if noise_seed is not None:
        utils.seed_everything(noise_seed + 7919 * info.rank)  # per-rank noise and dropout

    objects: dict[str, Any] = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d}
    if ema is not None:
        objects["ema"] = ema
    ckpt = training.Checkpointer(name, config_dict, train.checkpoint_every, info)
    start, extra = ckpt.load(objects)
    rows: list[dict[str, float]] = extra.get("rows", [])
    best: dict[str, Any] = extra.get("best", {"score": -math.inf, "step": -1, "g": None, "d": None})
    resumed_seconds = float(extra.get("train_seconds", 0.0))
    sampler = ema if ema is not None else g
    g_caps, d_caps = (max_norm_weights(g), max_norm_weights(d)) if optim.max_norm else ([], [])
    device = training.module_device(g)
    # d_loss, g_loss, D(real), D(fake) summed over the steps since the last row, per rank (read once per row)
    saved_sums = extra.get("row_sums", [torch.zeros(4, dtype=torch.float64)])
    sums = saved_sums[min(info.rank, len(saved_sums) - 1)].to(device)
    since_row, diverged_at = int(extra.get("row_steps", 0)), 0
    bar_shown = sys.stderr.isatty()
    bf16 = train.precision == "bf16"

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    t0 = time.perf_counter()

    for step in utils.progress(range(start, train.steps), desc=name, total=train.steps - start):
        lr_g = set_schedule(optim, step, opt_g, opt_d)
        idx = training.batch_indices(len(task), train.batch_size, step, seed, info)
        batch = task.batch(idx.to(task.device()))
        with autocast(), torch.no_grad() if task.fresh_noise_for_g else nullcontext():
            fake = task.generate(g_run, batch)  # the D step's fakes (G's step reuses them unless fresh)
        loss_d, d_real, d_fake = d_step(task, d_run, opt_d, batch, fake, train.loss, autocast)
        if d_caps:
            apply_max_norm(d_caps, optim.max_norm)
        loss_g = g_step(task, g_run, d, opt_g, batch, fake, train.loss, autocast)
        if g_caps:
            apply_max_norm(g_caps, optim.max_norm)
        if ema is not None:
            ema_update(ema, g, ema_decay_at(train.ema_decay, step))

        done = step + 1
        with torch.no_grad():
            sums += torch.stack([loss_d, loss_g, d_real.float().mean(), d_fake.float().mean()]).double()
        since_row += 1
        if not math.isfinite((loss_d + loss_g).item()):  # NaN gradients are all-reduced: every rank sees it
            log.warning("%s diverged at step %d (non-finite loss); keeping the selected model", name, done)
            diverged_at = done
            break
        if train.log_every and (done % train.log_every == 0 or done == train.steps):
            means = (sums / since_row).tolist()
            row = {
                "step": done,
                **{
                    k: training.mean_across_ranks(v, info)
                    for k, v in zip(("d_loss", "g_loss", "d_real", "d_fake"), means)
                },
                "lr": lr_g,
            }
            rows.append(row)
            sums.zero_()
            since_row = 0
            if not bar_shown and info.is_main:
                rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                log.info(
                    "%s step %d/%d: d_loss %.4f g_loss %.4f (%.2f steps/s)",
                    name, done, train.steps, row["d_loss"], row["g_loss"], rate,
                )  # fmt: skip
        if (
            select is not None
            and train.select_every
            and (done % train.select_every == 0 or done == train.steps)
        ):
            score = select(sampler) if info.is_main else 0.0
            score = training.mean_across_ranks(score, info) * info.world_size  # rank 0's value everywhere
            log.info("%s step %d: selection score %.4f (best %.4f)", name, done, score, best["score"])
            if math.isfinite(score) and score > best["score"]:
                best = {
                    "score": score,
                    "step": done,
                    "g": copy.deepcopy(sampler.state_dict()),
                    "d": copy.deepcopy(d.state_dict()),
                }
        if train.checkpoint_every and done % train.checkpoint_every == 0 and done < train.steps:
            seconds = resumed_seconds + time.perf_counter() - t0
            extra = {
                "rows": rows,
                "best": best,
                "train_seconds": seconds,
                "row_sums": training.gather(sums, info),
                "row_steps": since_row,
            }
            ckpt.save(done, objects, extra)

    elapsed = time.perf_counter() - t0
    if diverged_at and best["g"] is None:
        raise errors.UserError(
            f"{name}: training diverged at step {diverged_at} before any model selection; "
            "lower lr, set max_norm, or set select_every below the divergence step"
        )
    final = sampler
    if best["g"] is not None:
        final = copy.deepcopy(sampler)
        final.load_state_dict(best["g"])
        d.load_state_dict(best["d"])
    return FitResult(
        g=final.eval(),
        d=d,
        rows=rows,
        selected_step=best["step"] if best["g"] is not None else train.steps,
        selected_score=best["score"] if best["g"] is not None else float("nan"),
        diverged_at_step=diverged_at,
        train_seconds=resumed_seconds + elapsed,
        steps_per_second=(train.steps - start) / max(elapsed, 1e-9),
        checkpointer=ckpt,
    )
