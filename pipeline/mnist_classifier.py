"""Stage mnist_classifier: a small CNN trained on real MNIST, judge of the GANs' samples.

Used by the GAN stages (through tagan.mnist.evaluation) for conditional accuracy and for a Frechet
distance on its penultimate features. Paths come from dvc.yaml:
`python -m pipeline.mnist_classifier --data data/mnist/mnist.npz --model data/models/mnist_classifier.pt
 --metrics metrics/mnist_classifier.json --plot plots/mnist_classifier_train.csv`
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagan import config, stage
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.files import write_csv, write_json
from tagan.mnist.classifier import ClassifierTraining, accuracy, fit_classifier
from tagan.readers.mnist import load_npz
from tagan.training import Checkpointer
from tagan.utils import resolve_device, save_checkpoint, seed_everything, set_threads

log = logging.getLogger(__name__)


@dataclass
class Params(ClassifierTraining):
    """The `mnist_classifier` section of params.yaml (the network shape and its training)."""


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

    ckpt = Checkpointer("mnist_classifier", config.to_dict(cfg), cfg.checkpoint_every)
    fit = fit_classifier(cfg, x_train, y_train, device, ckpt)
    model = fit.model

    metrics = {
        "val_accuracy": round(accuracy(model, data["x_val"], data["y_val"], device), 6),
        "test_accuracy": round(accuracy(model, data["x_test"], data["y_test"], device), 6),
        "train_seconds": round(fit.seconds, 1),
        "steps": fit.steps,
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
    write_csv(plot_path, fit.rows)
    write_json(metrics_path, metrics)
    ckpt.finish()
    log.info(
        "test accuracy %.4f, val accuracy %.4f, trained in %.0f s",
        metrics["test_accuracy"],
        metrics["val_accuracy"],
        fit.seconds,
    )
    return metrics


def main() -> None:
    stage.main(run, Params, "mnist_classifier")


if __name__ == "__main__":
    main()
