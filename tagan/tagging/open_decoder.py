"""Serving the open tag CGAN (tagan.models.open_cgan) without torch: G's forward pass in numpy, hard samples and
expected votes over the open vocabulary.

G at inference is four small matrix products (the noise, posterior and feature branches and the joint layer);
numpy runs them in well under a millisecond per photo, so `tagan tag` with the default method imports no torch
(half its start-up). `GeneratorWeights.cond_logits` and `.noise_logits` are the torch Generator's methods of the
same name (tests/test_open_vocab.py checks them against it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tagan.errors import UserError
from tagan.tagging.index import TagIndex, Tags, count_votes, l2_normalize, top_k_order
from tagan.tagging.open_vocab import posterior

# (seed, samples) -> (noise logits (S, W), log E (S, W), the generator's state after them)
NoiseCache = dict[tuple[int, int], tuple[np.ndarray, np.ndarray, dict[str, Any]]]
T = TypeVar("T")
NOISE_CACHE_ENTRIES, NOISE_CACHE_ELEMENTS = 8, 1 << 20  # seeds kept; (S, W) elements per seed at most


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


@dataclass
class GeneratorWeights:
    """The open CGAN's G in inference mode (dropout off): its weights as float32 arrays, from a state dict."""

    noise_hidden: int  # g_noise_hidden: the noise branch's share of the joint layer's inputs
    prior_weight: float
    state: dict[str, np.ndarray]  # the torch Generator's state_dict keys

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> GeneratorWeights:
        """From {"config": {"model": OpenCGANConfig fields, ...}, "state_dict": {"generator": {name: array}}}
        (torch tensors too)."""
        model = ckpt["config"]["model"]
        state = {k: np.asarray(v, dtype=np.float32) for k, v in ckpt["state_dict"]["generator"].items()}
        return cls(int(model["g_noise_hidden"]), float(model["prior_weight"]), state)

    @property
    def z_dim(self) -> int:
        return self.state["noise.0.weight"].shape[1]

    def _dense(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.state[f"{name}.weight"].T + self.state[f"{name}.bias"]

    def cond_logits(self, post: np.ndarray, x: np.ndarray, gate: np.ndarray) -> np.ndarray:
        """The noise-free part of the logits (B, W): posterior and feature branches (+ the WordNet prior)."""
        s = self.state
        hp = _relu(self._dense("post.0", post))  # (B, Hp)
        hf = _relu(self._dense("feat.0", (x - s["norm.mean"]) / s["norm.std"]))  # (B, Hf)
        g = gate[:, None]
        hf = g * hf + (1 - g) * s["missing"]
        out = np.concatenate([hp, hf], axis=1) @ s["joint.weight"][:, self.noise_hidden :].T + s["joint.bias"]
        if self.prior_weight > 0:
            out += self.prior_weight * np.log(post @ s["prior"] + 1e-4)
        return out.astype(np.float32, copy=False)

    def noise_logits(self, z: np.ndarray) -> np.ndarray:
        """The noise part of the logits (S, W)."""
        return _relu(self._dense("noise.0", z)) @ self.state["joint.weight"][:, : self.noise_hidden].T


def sample_words(
    g: GeneratorWeights, post: np.ndarray, x: np.ndarray, gate: np.ndarray, samples: int, seed: int = 0,
    cache: NoiseCache | None = None,
) -> np.ndarray:  # fmt: skip
    """Hard samples: (B, S) head-word ids, each an exact draw from softmax(G's logits) (the Gumbel-max trick:
    argmax(logits - log E), E ~ Exp(1)).

    The posterior/feature part of the logits is computed once per image; only the noise part per sample.
    The first image's draws depend only on (seed, samples): with `cache` (one per G) they are drawn once and
    kept with the generator's state after them, so a call tags exactly as without it (the CLI tags one photo
    per call, all with one seed: its per-photo cost drops to the conditional logits and an argmax).
    """
    rng = np.random.default_rng(seed)
    base = g.cond_logits(post, x, gate)  # (B, W)
    width = base.shape[1]

    def draw() -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((samples, g.z_dim), dtype=np.float32)
        e = rng.standard_exponential((samples, width), dtype=np.float32)  # can be exactly 0 in float32
        return g.noise_logits(z), np.log(np.maximum(e, np.finfo(np.float32).tiny))

    out = np.empty((base.shape[0], samples), np.int64)
    for i in range(base.shape[0]):
        if i == 0 and cache is not None and samples * width <= NOISE_CACHE_ELEMENTS:
            noise, log_e, state = _cached(cache, (seed, samples), lambda: (*draw(), rng.bit_generator.state))
            rng.bit_generator.state = state  # as if drawn now: the next image draws what it drew before
        else:
            noise, log_e = draw()
        out[i] = (base[i] + noise - log_e).argmax(1)  # -log(E) is Gumbel noise: an exact categorical draw
    return out


class OpenDecoder:
    """Serves an open CGAN checkpoint: posterior from features, optional feature gate, hard samples, votes.

    A hard sample IS a head word's vector, a row of the open index, so its FAISS nearest neighbours are a
    fixed list per head word (its own word first: cosine 1): they are looked up once at load, and decoding
    needs no search per photo: `count_votes` counts them as `decode_votes` would on the sampled vectors.
    """

    def __init__(
        self, g: GeneratorWeights, head_rows: np.ndarray, index: TagIndex, head: tuple[np.ndarray, np.ndarray],
        train_features: np.ndarray | None = None, table_k: int = 20,
    ) -> None:  # fmt: skip
        self.g, self.index = g, index
        self.train_features = None if train_features is None else l2_normalize(train_features)  # (N, F)
        self.head = head  # the backbone's ImageNet head: weight (C, F), bias (C,)
        self.head_rows = head_rows  # (W,) open-index row of each head word
        sims, nn_idx = index.rows_search(head_rows, table_k)  # (W, k): own word first
        self.table, self.table_sims = nn_idx, sims
        self.noise_cache: NoiseCache = {}  # (seed, samples) -> the first image's draws (sample_words)
        self.expected_noise: dict[tuple[int, int], np.ndarray] = {}  # (seed, samples) -> noise logits (S, W)

    @classmethod
    def load(
        cls, ckpt: dict[str, Any], index: TagIndex, head: tuple[np.ndarray, np.ndarray],
        train_features: np.ndarray | None = None,
    ) -> OpenDecoder:  # fmt: skip
        words = ckpt["config"]["head"]
        missing = [w for w in words if w not in index.word_index]
        if missing:
            raise UserError(
                f"open CGAN head words missing from the open index ({missing[:3]}); rebuild the model"
            )
        rows = np.array([index.word_index[w] for w in words], dtype=np.int64)
        return cls(GeneratorWeights.from_checkpoint(ckpt), rows, index, head, train_features)

    def gate(self, features: np.ndarray, feature_gate: float) -> np.ndarray:
        """1 for images whose cosine to the nearest training image is >= feature_gate, else 0: (B,)."""
        if feature_gate <= 0:
            return np.ones(len(features), np.float32)
        if feature_gate > 1 or self.train_features is None:
            return np.zeros(len(features), np.float32)
        nearest = (l2_normalize(features) @ self.train_features.T).max(axis=1)  # (B,)
        return (nearest >= feature_gate).astype(np.float32)

    def inputs(self, features: np.ndarray, feature_gate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(posterior (B, C), features (B, F), gate (B,)) for G."""
        f = np.asarray(features, dtype=np.float32)
        return posterior(f, self.head).astype(np.float32), f, self.gate(f, feature_gate)

    def tag(
        self, features: np.ndarray, *, samples: int, neighbors: int, top_k: int, seed: int = 0,
        allowed: set[str] | None = None, feature_gate: float = 2.0, expected: bool = False,
    ) -> Tags:  # fmt: skip
        """Top-k words per image by votes of `samples` hard samples, each voting for its `neighbors` nearest words;
        `expected`: by the votes' expectation over the same noise draws (no sampling noise in the ranking)."""
        post, x, gate = self.inputs(features, feature_gate)
        mask = None if allowed is None else np.array([w in allowed for w in self.index.words])
        k = min(neighbors, self.table.shape[1])
        if expected:
            return self.expected_votes(post, x, gate, samples, k, top_k, seed, mask)
        ids = sample_words(self.g, post, x, gate, samples, seed, self.noise_cache)  # (B, S)
        b = ids.shape[0]
        idx, sims = self.table[ids, :k].reshape(b, -1), self.table_sims[ids, :k].reshape(b, -1)  # (B, S*k)
        return count_votes(idx, sims, self.index.words, top_k=top_k, mask=mask)

    def expected_votes(
        self, post: np.ndarray, x: np.ndarray, gate: np.ndarray, samples: int, k: int, top_k: int, seed: int,
        mask: np.ndarray | None,
    ) -> Tags:  # fmt: skip
        """Each word's expected vote share: softmax(G's logits) averaged over `samples` noise draws (one set for
        every image), each head word's probability given to its k nearest words."""

        def draw() -> np.ndarray:
            z = np.random.default_rng(seed).standard_normal((samples, self.g.z_dim), dtype=np.float32)
            return self.g.noise_logits(z)

        noise = _cached(self.expected_noise, (seed, samples), draw)  # (S, W)
        base = self.g.cond_logits(post, x, gate)  # (B, W)
        chunks = np.split(base, range(16, len(base), 16))  # (16, S, W) at a time
        probs = np.concatenate([_softmax(b[:, None, :] + noise[None]).mean(1) for b in chunks])
        words = self.index.words
        votes = np.zeros((len(probs), len(words)))  # (B, V)
        for j in range(k):
            np.add.at(votes, (slice(None), self.table[:, j]), probs)
        votes /= k
        if mask is not None:
            votes[:, ~mask] = 0.0
        order = top_k_order(votes, top_k)
        return [[(words[j], float(v[j])) for j in row if v[j] > 0] for v, row in zip(votes, order)]


def _cached(cache: dict[Any, T], key: Any, make: Callable[[], T]) -> T:
    """cache[key], made on first use; at NOISE_CACHE_ENTRIES entries the oldest goes."""
    if key not in cache:
        if len(cache) >= NOISE_CACHE_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _softmax(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis, in place."""
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    return logits
