"""Stage tags_data: a tagged image collection -> cleaned tags, capped series, group/image splits, vocabulary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagan import stage
from tagan.config import Runtime
from tagan.files import write_json, write_text
from tagan.tagging.collection import CollectionConfig, build, read_collection

log = logging.getLogger(__name__)


@dataclass
class Params(CollectionConfig):
    """params.yaml `tags_data`: where the collection comes from and how its tags are cleaned and split."""


def run(cfg: Params, runtime: Runtime, out_dir: Path, metrics_path: Path) -> dict[str, Any]:
    """Read the source, build the dataset and write items.jsonl + vocab.json to `out_dir` and metrics."""
    del runtime  # no compute here
    rows, vocab, metrics = build(read_collection(cfg), cfg)
    out_dir = Path(out_dir)
    write_text(out_dir / "items.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    write_json(out_dir / "vocab.json", vocab)
    write_json(metrics_path, metrics)
    log.info(
        "tags_data: %d images, %d groups, %d tags, %.2f tags/image (train/val/test %d/%d/%d)",
        metrics["images"], metrics["groups"], metrics["vocab_size"], metrics["tags_per_image"],
        metrics["train_images"], metrics["val_images"], metrics["test_images"],
    )  # fmt: skip
    return metrics


def main() -> None:
    stage.main(run, Params, "tags_data")


if __name__ == "__main__":
    main()
