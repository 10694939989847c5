"""Training and scoring the MNIST classifier (the judge of the GANs' samples): config, fit loop, accuracy."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tagan import config
from tagan.models.mnist import ClassifierConfig, MnistClassifier, infer
from tagan.training import Checkpointer, batch_indices, steps_per_epoch
from tagan.utils import progress

log = logging.getLogger(__name__)


@dataclass
class ClassifierTraining:
    """The classifier's shape and how it is trained (the mnist_classifier stage's params)."""

    channels: tuple[int, int] = (16, 32)  # conv widths of the two blocks
    hidden: int = 128  # penultimate feature size (the Frechet distance's feature space)
    dropout: float = 0.25
    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-3  # peak of the one-cycle schedule (Adam)
    weight_decay: float = 1e-4
    shift: int = 0  # random translation augmentation, in pixels (0 = off)
    train_limit: int = 0  # use only the first N training images (0 = all; for quick checks)
    seed: int = 0
    log_every: int = 50  # steps between rows of the training-curve CSV
    checkpoint_every: int = 200  # steps between resume files (0 = never)

    def __post_init__(self) -> None:
        config.check(all(c > 0 for c in self.channels), "channels", f"must be > 0, got {self.channels}")
        config.positive("hidden", self.hidden)
        config.in_range("dropout", self.dropout, 0.0, 0.9)
        config.positive("epochs", self.epochs)
        config.positive("batch_size", self.batch_size)
        config.positive("lr", self.lr)
        config.in_range("weight_decay", self.weight_decay, 0.0, 1.0)
        config.in_range("shift", self.shift, 0, 8)
        config.check(self.train_limit >= 0, "train_limit", f"must be >= 0, got {self.train_limit}")
        config.positive("log_every", self.log_every)
        config.check(
            self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}"
        )

    def model_config(self) -> ClassifierConfig:
        """The network shape these params ask for."""
        return ClassifierConfig(channels=tuple(self.channels), hidden=self.hidden, dropout=self.dropout)


def random_shift(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Translate each image (B, 1, H, W) by its own random offset in [-shift, shift] pixels (zero fill)."""
    if shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))  # (B, 1, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * shift + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * shift + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    return padded[torch.arange(b, device=x.device)[:, None, None], 0, rows, cols].unsqueeze(1)  # (B, 1, H, W)


def accuracy(model: MnistClassifier, images: np.ndarray, labels: np.ndarray, device: torch.device) -> float:
    """Share of images classified as their label."""
    _, logits = infer(model, images, device)
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


@dataclass
class FitResult:
    """A trained classifier (eval mode) and how its training went."""

    model: MnistClassifier
    rows: list[dict[str, Any]]  # the training curve: step, epoch, loss, train_acc, lr
    seconds: float  # training time, resumed runs' earlier time included
    steps: int


def fit_classifier(
    cfg: ClassifierTraining,
    x_train: np.ndarray,
    y_train: np.ndarray,
    device: torch.device,
    checkpointer: Checkpointer,
) -> FitResult:
    """Train on images (N, 28, 28) uint8 with one-cycle AdamW, resuming from `checkpointer`."""
    x_all = torch.as_tensor(x_train, device=device)  # (N, 28, 28) uint8, scaled per batch
    y_all = torch.as_tensor(y_train, device=device)  # (N,)
    model = MnistClassifier(config=cfg.model_config()).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = steps_per_epoch(len(x_train), cfg.batch_size)
    total = cfg.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2)
    objects = {"model": model, "opt": opt, "sched": sched}
    start, extra = checkpointer.load(objects)
    rows: list[dict[str, Any]] = extra.get("rows", [])
    elapsed = float(extra.get("elapsed", 0.0))

    t0 = time.perf_counter()
    model.train()
    loss_sum = correct = seen = 0.0
    for step in progress(range(start, total), desc="mnist_classifier", total=total - start):
        idx = batch_indices(len(x_train), cfg.batch_size, step, cfg.seed).to(device)
        x = x_all[idx].float().div_(255).unsqueeze(1)  # (B, 1, 28, 28)
        x = random_shift(x, cfg.shift).contiguous(memory_format=torch.channels_last)
        y = y_all[idx]
        logits = model(x)  # (B, 10)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            rows.append(
                {
                    "step": done,
                    "epoch": round(done / per_epoch, 4),
                    "loss": round(loss_sum / seen, 6),
                    "train_acc": round(correct / seen, 6),
                    "lr": float(f"{sched.get_last_lr()[0]:.6g}"),
                }
            )
            log.info("step %d/%d loss %.4f train acc %.4f", done, total, loss_sum / seen, correct / seen)
            loss_sum = correct = seen = 0.0
        checkpointer.maybe_save(done, objects, {"rows": rows, "elapsed": elapsed + time.perf_counter() - t0})
    seconds = elapsed + time.perf_counter() - t0
    return FitResult(model.eval(), rows, seconds, total)
