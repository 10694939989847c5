"""Tag data, the vocabulary's FAISS index (TagIndex), and the decodings every tagging method shares.

The decodings: the paper's vote counting (`count_votes`, `decode_votes`), top-k of a score matrix
(`top_from_scores`), kNN tag transfer and ImageNet zero-shot scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from tagan.errors import UserError
from tagan.files import atomic_path, read_json, write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Tags = list[list[tuple[str, float]]]  # per image: (word, score), best first


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --- data readers for the tagging branch ---------------------------------------------------------


@dataclass
class TagData:
    """Items aligned with their features: ids (N,), features (N, F), tags per item, splits."""

    ids: list[str]
    features: np.ndarray  # (N, F) float32
    tags: list[list[str]]
    split: dict[str, np.ndarray]  # split column name -> (N,) array of 'train'|'val'|'test'
    paths: list[str]
    vocab: list[str]
    train_counts: dict[str, int]
    backbone: str = "efficientnet_lite0"
    groups: list[str] = field(default_factory=list)  # group (series, folder) of every item; the split's unit
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self, name: str, column: str = "split") -> np.ndarray:
        """Row indices of split `name` ('train'|'val'|'test') under `column` ('split'|'split_image')."""
        return np.flatnonzero(self.split[column] == name)


def read_tag_data(items_path: Path, vocab_path: Path, features_path: Path) -> TagData:
    """Join items.jsonl, vocab.json and features.npz on id (items without features are dropped)."""
    for p in (items_path, vocab_path, features_path):
        if not Path(p).exists():
            raise UserError(f"{p} not found; build it first with `dvc repro tags_data image_features`")
    items = [json.loads(line) for line in Path(items_path).read_text().splitlines() if line.strip()]
    vocab_json = read_json(vocab_path)
    vocab = list(vocab_json["tags"])
    z = np.load(features_path, allow_pickle=False)
    fid = [str(i) for i in z["ids"]]
    feats = z["features"].astype(np.float32)
    backbone = str(z["backbone"].reshape(-1)[0]) if "backbone" in z.files else "efficientnet_lite0"
    row = {i: r for r, i in enumerate(fid)}
    vset = set(vocab)
    keep = [it for it in items if str(it["id"]) in row and any(t in vset for t in it["tags"])]
    if not keep:
        raise UserError(f"no item of {items_path} has both features in {features_path} and a vocabulary tag")
    if len(keep) < len(items):
        log.info("%d of %d items have features and vocabulary tags", len(keep), len(items))
    split = {"split": np.array([it["split"] for it in keep])}
    if all("split_image" in it for it in keep):
        split["split_image"] = np.array([it["split_image"] for it in keep])
    return TagData(
        ids=[str(it["id"]) for it in keep],
        features=feats[[row[str(it["id"])] for it in keep]],
        tags=[[t for t in it["tags"] if t in vset] for it in keep],
        split=split,
        paths=[str(it.get("path", "")) for it in keep],
        vocab=vocab,
        train_counts={k: int(v) for k, v in vocab_json.get("train_counts", {}).items()},
        backbone=backbone,
        groups=[str(it.get("group") or str(it["id"]).rsplit("/", 1)[0]) for it in keep],
    )


def tag_matrix(tags: list[list[str]], vocab: list[str]) -> np.ndarray:
    """Multi-hot (N, V) float32 matrix of tag lists."""
    col = {w: j for j, w in enumerate(vocab)}
    y = np.zeros((len(tags), len(vocab)), dtype=np.float32)
    for i, ts in enumerate(tags):
        y[i, [col[t] for t in ts if t in col]] = 1.0
    return y


# --- vocabulary index ----------------------------------------------------------------------------


class TagIndex:
    """Vocabulary words with L2-normalised vectors (V, D) and a FAISS inner-product (= cosine) index.

    Exact `IndexFlatIP` up to `exact_threshold` words, HNSW above it.
    """

    def __init__(
        self, words: list[str], vectors: np.ndarray, *, exact_threshold: int = 50_000, hnsw_m: int = 32
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"vectors {vectors.shape} must be (len(words)={len(words)}, D)")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words = list(words)
        self.vectors = l2_normalize(vectors)  # (V, D)
        self.exact_threshold = exact_threshold
        self.hnsw_m = hnsw_m
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.index = self._build()

    def _build(self) -> faiss.Index:
        d = self.dim
        if len(self.words) <= self.exact_threshold:
            index = faiss.IndexFlatIP(d)
        else:
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = 128
        index.add(self.vectors)
        return index

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def exact(self) -> bool:
        return isinstance(self.index, faiss.IndexFlatIP)

    def __len__(self) -> int:
        return len(self.words)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k words by cosine: queries (N, D) -> (scores (N, k), idx (N, k)); idx -1 pads k > V."""
        q = l2_normalize(np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim))
        return self.index.search(q, min(k, len(self.words)))

    def rows_search(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`search(self.vectors[rows], k)`, kept on disk for an index read by load(): the saved result of the
        same search, keyed by the index file's hash, the faiss version, its thread count (the BLAS blocking, so
        near-ties, depend on it), `rows` and `k`: bit-identical to searching."""
        source = getattr(self, "source", None)
        if source is None:
            return self.search(self.vectors[rows], k)
        from tagan.files import save_npz
        from tagan.models.backbones import cache_dir, file_digest

        rows = np.ascontiguousarray(rows, dtype=np.int64)
        key = hashlib.blake2b(
            f"{file_digest(source)}:{faiss.__version__}:{faiss.omp_get_max_threads()}:{k}:".encode()
            + rows.tobytes()
        )
        path = cache_dir() / "searches" / f"{key.hexdigest()[:32]}.npz"
        try:
            with np.load(path) as z:
                sims, idx = z["sims"], z["idx"]
            if sims.shape == idx.shape == (len(rows), min(k, len(self.words))):
                return sims, idx
        except (OSError, ValueError, KeyError):
            pass  # not cached yet, or a broken file: search again
        sims, idx = self.search(self.vectors[rows], k)
        try:
            save_npz(path, sims=sims, idx=idx)
        except OSError as e:
            log.info("cannot cache the search in %s (%s)", path, e)
        return sims, idx

    def save(self, directory: Path) -> None:
        """Write words.json, vectors.npy, index.faiss and meta.json together (row-aligned)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "vectors.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, self.vectors)
        with atomic_path(directory / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        write_json(
            directory / "meta.json",
            {
                "exact_threshold": self.exact_threshold,
                "hnsw_m": self.hnsw_m,
                "size": len(self.words),
                "dim": self.dim,
                "exact": self.exact,
            },
        )
        write_json(directory / "words.json", self.words)

    @classmethod
    def load(cls, directory: Path) -> TagIndex:
        """Read an index written by save(); a missing or inconsistent directory is a UserError."""
        directory = Path(directory)
        if not (directory / "words.json").exists():
            raise UserError(f"no tag index in {directory}; build it with `dvc repro tag_embeddings`")
        words = read_json(directory / "words.json")
        vectors = np.load(directory / "vectors.npy")
        meta = read_json(directory / "meta.json")
        self = cls.__new__(cls)
        self.words, self.vectors = list(words), vectors.astype(np.float32)
        self.exact_threshold, self.hnsw_m = int(meta["exact_threshold"]), int(meta["hnsw_m"])
        self.word_index = {w: i for i, w in enumerate(self.words)}
        self.index = faiss.read_index(str(directory / "index.faiss"))
        self.source = directory / "index.faiss"
        if self.index.ntotal != len(words) or vectors.shape[0] != len(words):
            raise UserError(
                f"tag index in {directory} is inconsistent (words, vectors, index sizes differ); rebuild it"
            )
        return self

    def vector(self, word: str) -> np.ndarray:
        return self.vectors[self.word_index[word]]


def decode_votes(
    generated: np.ndarray | torch.Tensor,
    index: TagIndex,
    *,
    neighbors: int = 20,
    top_k: int = 10,
    allowed: set[str] | None = None,
    weighted: bool = False,
) -> Tags:
    """The paper's decoding: each of S generated vectors votes for its `neighbors` nearest words.

    generated (B, S, D). An image's tags are its top_k most-voted words, scored by vote share (votes /
    (S * neighbors)); ties break on summed cosine. weighted=True counts each vote by its cosine instead.
    `allowed` restricts the candidate words (exact search over that subset).
    """
    g = np.asarray(
        generated.detach().cpu() if hasattr(generated, "detach") else generated
    )  # a torch tensor too
    if g.ndim == 2:
        g = g[:, None, :]
    b, s, d = g.shape
    flat = g.reshape(b * s, d)
    if allowed is not None:
        cand = np.array(sorted(index.word_index[w] for w in allowed if w in index.word_index), dtype=np.int64)
        if cand.size == 0:
            return [[] for _ in range(b)]
        sims = l2_normalize(flat) @ index.vectors[cand].T  # (B*S, A)
        k = min(neighbors, cand.size)
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        scores = np.take_along_axis(sims, part, axis=1)
        idx = cand[part]
    else:
        scores, idx = index.search(flat, neighbors)
        k = idx.shape[1]
    return count_votes(
        idx.reshape(b, s * k), scores.reshape(b, s * k), index.words, top_k=top_k, weighted=weighted
    )


def count_votes(
    idx: np.ndarray,
    sims: np.ndarray,
    words: list[str],
    *,
    top_k: int,
    weighted: bool = False,
    mask: np.ndarray | None = None,
) -> Tags:
    """Count votes: image i's N votes go to words idx[i] (-1 = none) with cosines sims[i] (idx, sims: (B, N)).

    Its tags are its top_k most-voted words scored by vote share (votes / N); ties break on summed cosine.
    weighted=True counts each vote by its cosine (share: of the summed cosines). `mask` (V,) bool drops words.
    """
    v, n = len(words), idx.shape[1]
    out: Tags = []
    for row, row_sims in zip(idx, sims):
        valid = row >= 0
        counts = np.bincount(row[valid], minlength=v).astype(np.float64)  # (V,)
        simsum = np.bincount(row[valid], weights=row_sims[valid], minlength=v)  # (V,)
        votes = simsum if weighted else counts
        share = votes / max(simsum.sum() if weighted else float(n), 1e-12)
        key = votes + 1e-6 * simsum / max(n, 1)  # tie-break on summed cosine
        if mask is not None:
            key = np.where(mask, key, -1.0)
        order = np.argsort(-key, kind="stable")[:top_k]
        out.append(
            [(words[j], float(share[j])) for j in order if counts[j] > 0 and (mask is None or mask[j])]
        )
    return out


def top_k_order(scores: np.ndarray, top_k: int) -> np.ndarray:
    """`np.argsort(-scores, axis=1, kind="stable")[:, :top_k]` (ties in column order) without sorting every
    column: a partition finds each row's top_k-th value, only the columns at or above it are sorted."""
    scores = np.asarray(scores)
    if top_k >= scores.shape[1] or top_k <= 0:
        return np.argsort(-scores, axis=1, kind="stable")[:, : max(top_k, 0)]
    kth = -np.partition(-scores, top_k - 1, axis=1)[:, top_k - 1]  # (B,)
    out = np.empty((len(scores), top_k), dtype=np.int64)
    for i, (row, t) in enumerate(zip(scores, kth)):
        cand = np.flatnonzero(row >= t)  # ascending columns: a stable sort keeps ties in column order
        out[i] = cand[np.argsort(-row[cand], kind="stable")[:top_k]]
    return out


def top_from_scores(
    scores: np.ndarray, words: list[str], top_k: int, allowed: set[str] | None = None
) -> Tags:
    """Top-k words per row of a score matrix (B, V), optionally restricted to `allowed`."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if allowed is not None:
        mask = np.array([w in allowed for w in words])
        scores[:, ~mask] = -np.inf
    order = top_k_order(scores, top_k)
    return [
        [(words[j], float(scores[i, j])) for j in row if np.isfinite(scores[i, j])]
        for i, row in enumerate(order)
    ]


def knn_scores(
    train_features: np.ndarray,
    train_tags: np.ndarray,
    queries: np.ndarray,
    k: int,
    exclude_self: bool = False,
) -> np.ndarray:
    """kNN tag transfer: cosine neighbours among train images vote with their similarity -> (B, V)."""
    base = l2_normalize(train_features)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    sims, idx = index.search(l2_normalize(queries), k + int(exclude_self))
    if exclude_self:
        sims, idx = sims[:, 1:], idx[:, 1:]
    w = np.maximum(sims, 0.0)[..., None]  # (B, k, 1)
    return (train_tags[idx] * w).sum(1) / k  # (B, V)


def zeroshot_scores(logits: np.ndarray, class_to_tag: np.ndarray, top_classes: int) -> np.ndarray:
    """ImageNet zero-shot: softmax over the top classes, spread onto tags by class->tag similarity (B, V)."""
    logits = np.asarray(logits, dtype=np.float64)
    top = np.argsort(-logits, axis=1)[:, :top_classes]  # (B, T)
    top_logits = np.take_along_axis(logits, top, axis=1)
    p = np.exp(top_logits - top_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)  # (B, T)
    return np.einsum("bt,btv->bv", p, class_to_tag[top])  # (B, V)
