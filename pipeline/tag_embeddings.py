"""Stage tag_embeddings: tag vectors + FAISS indexes for the training tags and for the open vocabulary.

out/ holds the training-tag TagIndex (`backend`: word2vec skip-gram on the train tag lists as in the paper,
GloVe or MiniLM), read by the paper/strong tag CGANs and the clip-art baselines; out/open/ holds the open
vocabulary of the vocabulary stage embedded with `open_backend` (MiniLM phrases or GloVe token means;
word2vec cannot cover words absent from the tag lists), read by the open CGAN and the open-vocabulary methods.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tagan import config, stage
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.files import read_json, write_json
from tagan.tagging.embeddings import (
    glove_vectors,
    minilm_vectors,
    neighbour_cooccurrence,
    open_vectors,
    phrase_text,
    train_tag_lists,
    word2vec_vectors,
)
from tagan.tagging.index import TagIndex, l2_normalize
from tagan.tagging.vocabulary import Vocabulary
from tagan.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `tag_embeddings`."""

    backend: Literal["word2vec", "glove", "minilm"] = "word2vec"  # the training-tag index (paper/strong)
    open_backend: Literal["minilm", "glove"] = "minilm"  # the open vocabulary's index (open preset)
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


def run(
    cfg: Params,
    runtime: Runtime,
    items_path: Path,
    vocab_path: Path,
    out_dir: Path,
    vocabulary_dir: Path | None = None,
    *,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Embed the training tags (out_dir) and, given a vocabulary stage output, the open vocabulary (out_dir/open)."""
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
        vectors = minilm_vectors([phrase_text(w) for w in vocab])
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
    }
    if vocabulary_dir is not None:
        t1 = time.perf_counter()
        words = Vocabulary.load(vocabulary_dir).words
        open_vecs, kept, open_missing = open_vectors(words, cfg.open_backend)
        if open_missing:
            log.warning("%d of %d vocabulary words have no %s vector and are left out: %s",
                        len(open_missing), len(words), cfg.open_backend, ", ".join(open_missing[:10]))  # fmt: skip
        lost = [t for t in vocab if t not in set(kept)]
        if lost:
            log.warning("%d training tags are not in the open index: %s", len(lost), ", ".join(lost[:10]))
        big = TagIndex(kept, open_vecs, exact_threshold=cfg.exact_threshold, hnsw_m=cfg.hnsw_m)
        big.save(Path(out_dir) / "open")
        metrics.update({
            "open_size": len(big), "open_dim": big.dim, "open_missing": len(open_missing),
            "open_exact_index": int(big.exact), "open_training_tags_lost": len(lost),
            "open_seconds": time.perf_counter() - t1,
        })  # fmt: skip
    metrics["seconds"] = time.perf_counter() - t0
    log.info("tag embeddings (%s): %s", cfg.backend, metrics)
    if metrics_path:
        write_json(metrics_path, metrics)
    return metrics


def main() -> None:
    stage.main(run, Params, "tag_embeddings")


if __name__ == "__main__":
    main()
