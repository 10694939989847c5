"""Stage mnist_classifier: a small CNN trained on real MNIST, judge of the GANs' samples.

Used by the GAN stages (through tagan.mnist_eval) for conditional accuracy and for a Frechet
distance on its penultimate features. Paths come from dvc.yaml:
`python -m pipeline.mnist_classifier --data data/mnist/mnist.npz --model data/models/mnist_classifier.pt
 --metrics metrics/mnist_classifier.json --plot plots/mnist_classifier_train.csv`
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tagan import config
from tagan.config import Runtime
from tagan.models.mnist import ClassifierConfig, MnistClassifier, infer
from tagan.readers.mnist import load_npz
from tagan.training import Checkpointer, batch_indices, steps_per_epoch
from tagan.utils import (
    UserError,
    progress,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_threads,
    stage_main,
    write_csv,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class Params:
    """The `mnist_classifier` section of params.yaml."""

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


def model_config(cfg: Params) -> ClassifierConfig:
    """The network shape a Params asks for."""
    return ClassifierConfig(channels=tuple(cfg.channels), hidden=cfg.hidden, dropout=cfg.dropout)


def run(
    cfg: Params, runtime: Runtime, data_path: Path, model_path: Path, metrics_path: Path, plot_path: Path
) -> dict[str, Any]:
    """Train the classifier, write checkpoint, training curve and accuracy metrics; returns the metrics."""
    seed_everything(cfg.seed)
    set_threads(runtime.num_threads)
    device = resolve_device(runtime.device)
    data = load_npz(data_path)
    x_train, y_train = data["x_train"], data["y_train"]
    if cfg.train_limit:
        x_train, y_train = x_train[: cfg.train_limit], y_train[: cfg.train_limit]
    if len(x_train) < cfg.batch_size:
        raise UserError(
            f"{len(x_train)} training images is fewer than batch_size {cfg.batch_size}; lower batch_size"
        )
    x_all = torch.as_tensor(x_train, device=device)  # (N, 28, 28) uint8, scaled per batch
    y_all = torch.as_tensor(y_train, device=device)  # (N,)

    model = MnistClassifier(config=model_config(cfg)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch(len(x_train), cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.2)
    ckpt = Checkpointer("mnist_classifier", config.to_dict(cfg), cfg.checkpoint_every)
    objects = {"model": model, "opt": opt, "sched": sched}
    start, extra = ckpt.load(objects)
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
                    "epoch": round(done / steps_per_epoch(len(x_train), cfg.batch_size), 4),
                    "loss": round(loss_sum / seen, 6),
                    "train_acc": round(correct / seen, 6),
                    "lr": float(f"{sched.get_last_lr()[0]:.6g}"),
                }
            )
            log.info("step %d/%d loss %.4f train acc %.4f", done, total, loss_sum / seen, correct / seen)
            loss_sum = correct = seen = 0.0
        ckpt.maybe_save(done, objects, {"rows": rows, "elapsed": elapsed + time.perf_counter() - t0})
    train_seconds = elapsed + time.perf_counter() - t0

    model.eval()
    metrics = {
        "val_accuracy": round(accuracy(model, data["x_val"], data["y_val"], device), 6),
        "test_accuracy": round(accuracy(model, data["x_test"], data["y_test"], device), 6),
        "train_seconds": round(train_seconds, 1),
        "steps": total,
        "n_train": len(x_train),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    save_checkpoint(
        model_path,
        {"model": config.to_dict(model.config), "params": config.to_dict(cfg)},
        {k: v.detach().cpu() for k, v in model.state_dict().items()},
        # no timings in the checkpoint: an identical re-run writes identical bytes (dvc.lock stays put)
        metrics={k: v for k, v in metrics.items() if k != "train_seconds"},
    )
    write_csv(plot_path, rows)
    write_json(metrics_path, metrics)
    ckpt.finish()
    log.info(
        "test accuracy %.4f, val accuracy %.4f, trained in %.0f s",
        metrics["test_accuracy"],
        metrics["val_accuracy"],
        train_seconds,
    )
    return metrics


def main() -> None:
    """CLI entry (paths come from dvc.yaml)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("data/mnist/mnist.npz"))
    ap.add_argument("--model", type=Path, default=Path("data/models/mnist_classifier.pt"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/mnist_classifier.json"))
    ap.add_argument("--plot", type=Path, default=Path("plots/mnist_classifier_train.csv"))
    args = ap.parse_args()
    cfg, runtime = config.load_stage(Params, "mnist_classifier")
    run(cfg, runtime, args.data, args.model, args.metrics, args.plot)


if __name__ == "__main__":
    stage_main(main)
