"""Stage tag_embeddings: one vector per vocabulary tag (word2vec skip-gram on train tags | GloVe | MiniLM) + FAISS index."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tagan import config
from tagan.config import Runtime
from tagan.embeddings import (
    glove_vectors,
    minilm_vectors,
    neighbour_cooccurrence,
    train_tag_lists,
    word2vec_vectors,
)
from tagan.tagging import TagIndex, l2_normalize
from tagan.utils import UserError, read_json, seed_everything, stage_main, write_json

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `tag_embeddings`."""

    backend: Literal["word2vec", "glove", "minilm"] = "word2vec"
    dim: int = 200  # word2vec only (GloVe is 50-d, MiniLM 384-d)
    window: int = 20  # word2vec context: tags of one image are an unordered set, so cover it all
    epochs: int = 50
    negative: int = 5
    min_count: int = 1
    seed: int = 0
    exact_threshold: int = 50_000  # vocabulary sizes above this use an HNSW index
    hnsw_m: int = 32

    def __post_init__(self) -> None:
        for key in ("dim", "window", "epochs", "min_count", "exact_threshold", "hnsw_m"):
            config.positive(key, getattr(self, key))
        config.check(self.negative >= 0, "negative", f"must be >= 0, got {self.negative}")


def run(cfg: Params, runtime: Runtime, items_path: Path, vocab_path: Path, out_dir: Path) -> dict[str, float]:
    """Embed the vocabulary with the chosen backend and save the TagIndex to out_dir."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    if not Path(vocab_path).exists():
        raise UserError(f"{vocab_path} not found; build it with `dvc repro tags_data`")
    vocab = list(read_json(vocab_path)["tags"])
    if not vocab:
        raise UserError(f"{vocab_path} has an empty vocabulary; lower tags_data's minimum tag frequency")
    sentences = train_tag_lists(items_path)
    missing: list[str] = []
    if cfg.backend == "word2vec":
        vectors, missing = word2vec_vectors(
            sentences,
            vocab,
            dim=cfg.dim,
            window=cfg.window,
            epochs=cfg.epochs,
            negative=cfg.negative,
            min_count=cfg.min_count,
            seed=cfg.seed,
        )
    elif cfg.backend == "glove":
        vectors, missing = glove_vectors(vocab, cfg.seed)
    else:
        vectors = minilm_vectors([w.replace("-", " ").replace("_", " ") for w in vocab])
    if missing:
        log.warning(
            "%d of %d tags have no %s vector (random vectors): %s",
            len(missing),
            len(vocab),
            cfg.backend,
            ", ".join(missing[:10]),
        )
    index = TagIndex(vocab, l2_normalize(vectors), exact_threshold=cfg.exact_threshold, hnsw_m=cfg.hnsw_m)
    index.save(out_dir)
    metrics = {
        "vocab_size": len(vocab),
        "dim": index.dim,
        "missing": len(missing),
        "exact_index": int(index.exact),
        "neighbour_cooccurrence": neighbour_cooccurrence(index, sentences),
        "train_tag_lists": len(sentences),
        "seconds": time.perf_counter() - t0,
    }
    log.info("tag embeddings (%s): %s", cfg.backend, metrics)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=Path, default=Path("data/tags/items.jsonl"))
    parser.add_argument("--vocab", type=Path, default=Path("data/tags/vocab.json"))
    parser.add_argument("--out", type=Path, default=Path("data/embeddings"), help="TagIndex directory")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/tag_embeddings.json"))
    args = parser.parse_args()
    cfg, runtime = config.load_stage(Params, "tag_embeddings")
    write_json(args.metrics, run(cfg, runtime, args.items, args.vocab, args.out))


if __name__ == "__main__":
    stage_main(main)
