"""The open-vocabulary tag CGAN: G(z, p, x) -> a word of a 2.6k-word head, conditioned on the ImageNet posterior.

Mirza & Osindero (2014, Sec. 4.2) generate tag vectors from image features; here the condition also carries
the photo knowledge of the backbone: its ImageNet-1k class posterior p(c|x). Like ConSE (Norouzi et al. 2014)
the posterior is mapped into the word space, but learnt (G is trained on class -> WordNet word pairs beside
the collection's image -> human tag pairs) rather than a fixed convex combination; like DeViSE (Frome et al.
2013) image and label meet in a word-vector space, but the image network stays frozen.

G: noise -> hidden, posterior -> hidden, features -> hidden (replaced by a learnt "no features" vector
when the feature gate is off), joint linear -> logits over the head words (+ `prior_weight` * log of the
WordNet class -> word table applied to p); a Gumbel-softmax draw mixes the head's word vectors (training)
or picks one word (`hard`, sampling: an exact draw from G's categorical distribution).
D: projection discriminator psi(h(t)) + <embed(p) + gate * embed(x), h(t)>.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan.models.tag_cgan import FeatureNorm, init_weights
from tagan.tagging.index import TagIndex, Tags, count_votes, l2_normalize, top_k_order
from tagan.tagging.open_vocab import posterior


@dataclass
class OpenCGANConfig:
    """Network shape of the open tag CGAN (params.yaml `open_cgan.model`); sizes of the data are filled in."""

    noise_dim: int = 32
    g_noise_hidden: int = 64
    g_post_hidden: int = 256
    g_feat_hidden: int = 256
    g_dropout: float = 0.3
    temperature: float = 0.3  # Gumbel-softmax temperature of the training samples
    prior_weight: float = 1.0  # weight of log(p @ T) added to G's logits (0 = off)
    d_hidden: int = 256
    feature_dim: int = 1280  # filled in from the data
    n_classes: int = 1000
    tag_dim: int = 384
    n_words: int = 0  # head size

    def __post_init__(self) -> None:
        from tagan import config

        for key in (
            "noise_dim",
            "g_noise_hidden",
            "g_post_hidden",
            "g_feat_hidden",
            "d_hidden",
            "temperature",
        ):
            config.positive(key, getattr(self, key))
        config.in_range("g_dropout", self.g_dropout, 0.0, 0.99)
        config.check(self.prior_weight >= 0, "prior_weight", f"must be >= 0, got {self.prior_weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator(nn.Module):
    """G(z, p, x, gate) -> head logits (B, W) and a tag vector (B, D)."""

    def __init__(self, cfg: OpenCGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = FeatureNorm(cfg.feature_dim)
        self.noise = nn.Sequential(nn.Linear(cfg.noise_dim, cfg.g_noise_hidden), nn.ReLU())  # (B, Hn)
        self.post = nn.Sequential(
            nn.Linear(cfg.n_classes, cfg.g_post_hidden), nn.ReLU(), nn.Dropout(cfg.g_dropout)
        )
        self.feat = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.g_feat_hidden), nn.ReLU(), nn.Dropout(cfg.g_dropout)
        )
        self.missing = nn.Parameter(torch.zeros(cfg.g_feat_hidden))  # the feature branch when gated off
        self.joint = nn.Linear(cfg.g_noise_hidden + cfg.g_post_hidden + cfg.g_feat_hidden, cfg.n_words)
        self.register_buffer("head_vectors", torch.zeros(cfg.n_words, cfg.tag_dim))  # (W, D)
        self.register_buffer("prior", torch.zeros(cfg.n_classes, cfg.n_words))  # (C, W) class -> word table

    def cond_logits(self, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The noise-free part of the logits (B, W): posterior and feature branches (+ the WordNet prior)."""
        hp = self.post(post)  # (B, Hp)
        hf = self.feat(self.norm(x))  # (B, Hf)
        g = gate[:, None]
        hf = g * hf + (1 - g) * self.missing
        w = self.joint.weight[:, self.cfg.g_noise_hidden :]  # (W, Hp + Hf)
        out = F.linear(torch.cat([hp, hf], dim=1), w, self.joint.bias)  # (B, W)
        if self.cfg.prior_weight > 0:
            out = out + self.cfg.prior_weight * torch.log(post @ self.prior + 1e-4)
        return out

    def noise_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The noise part of the logits (B, W)."""
        return F.linear(self.noise(z), self.joint.weight[:, : self.cfg.g_noise_hidden])

    def forward(
        self, z: torch.Tensor, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tag vector (B, D): Gumbel-softmax mix of head vectors, logits (B, W))."""
        logits = self.cond_logits(post, x, gate) + self.noise_logits(
            z
        )  # same as joint(cat[noise, post, feat])
        u = torch.rand_like(logits).clamp_(1e-9, 1 - 1e-9)
        probs = F.softmax((logits - torch.log(-torch.log(u))) / self.cfg.temperature, dim=1)  # (B, W)
        return probs @ self.head_vectors, logits


class Discriminator(nn.Module):
    """D(t, p, x, gate) -> one logit per pair (B,): psi(h(t)) + <embed(p) + gate * embed(x), h(t)>."""

    def __init__(self, cfg: OpenCGANConfig) -> None:
        super().__init__()
        h = cfg.d_hidden
        self.norm = FeatureNorm(cfg.feature_dim)
        self.tag = nn.Sequential(
            nn.Linear(cfg.tag_dim, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2)
        )
        self.post = nn.Linear(cfg.n_classes, h)
        self.feat = nn.Linear(cfg.feature_dim, h)
        self.out = nn.Linear(h, 1)

    def forward(
        self, t: torch.Tensor, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        h = self.tag(t)  # (B, H)
        e = self.post(post) + gate[:, None] * self.feat(self.norm(x))  # (B, H)
        return self.out(h).squeeze(1) + (h * e).sum(1)


def build(cfg: OpenCGANConfig) -> tuple[Generator, Discriminator]:
    """A freshly initialised (G, D) pair (N(0, 0.02) weights)."""
    g, d = Generator(cfg), Discriminator(cfg)
    init_weights(g)
    init_weights(d)
    return g, d


NoiseCache = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]]
NOISE_CACHE_ENTRIES, NOISE_CACHE_ELEMENTS = 8, 1 << 20  # seeds kept; (S, W) elements per seed at most


def _noise(
    g: Generator, samples: int, width: int, gen: torch.Generator, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's draws: (noise part of the logits (S, W), log E (S, W)) with E ~ Exp(1)."""
    z = torch.randn(samples, g.cfg.noise_dim, generator=gen)  # (S, Z)
    e = torch.from_numpy(rng.standard_exponential((samples, width), dtype=np.float32))  # E ~ Exp(1)
    return g.noise_logits(z), e.log_()


@torch.no_grad()
def sample_words(
    g: Generator, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, samples: int, seed: int = 0,
    cache: NoiseCache | None = None,
) -> torch.Tensor:  # fmt: skip
    """Hard samples: (B, S) head-word ids, each an exact draw from softmax(G's logits) (the Gumbel-max trick).

    The posterior/feature part of the logits is computed once per image; only the noise part per sample.
    The first image's draws depend only on (seed, samples): with `cache` (one per G) they are drawn once and
    kept with both generators' states after them, so a call tags exactly as without it (the CLI tags one
    photo per call, all with one seed: its per-photo cost drops to the conditional logits and an argmax).
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)  # numpy's ziggurat draws the (S, W) noise ~10x faster than torch's
    base = g.cond_logits(post, x, gate)  # (B, W)
    width = base.shape[1]
    out = []
    for i in range(base.shape[0]):
        if i == 0 and cache is not None and samples * width <= NOISE_CACHE_ELEMENTS:
            if (seed, samples) not in cache:
                if len(cache) >= NOISE_CACHE_ENTRIES:
                    cache.pop(next(iter(cache)))
                cache[seed, samples] = (
                    *_noise(g, samples, width, gen, rng),
                    gen.get_state(),
                    rng.bit_generator.state,
                )
            noise, log_e, gen_state, rng_state = cache[seed, samples]
            gen.set_state(gen_state)  # as if drawn now: the next image draws what it drew before
            rng.bit_generator.state = rng_state
        else:
            noise, log_e = _noise(g, samples, width, gen, rng)
        logits = base[i : i + 1] + noise  # (S, W)
        out.append((logits - log_e).argmax(1))  # -log(E) is Gumbel noise: an exact categorical draw
    return torch.stack(out)  # (B, S)


class OpenDecoder:
    """Serves an open CGAN checkpoint: posterior from features, optional feature gate, hard samples, votes.

    A hard sample IS a head word's vector, a row of the open index, so its FAISS nearest neighbours are a
    fixed list per head word (its own word first: cosine 1): they are looked up once at load, and decoding
    needs no search per photo: `count_votes` counts them as `decode_votes` would on the sampled vectors.
    """

    def __init__(
        self, g: Generator, head_rows: np.ndarray, index: TagIndex, head: tuple[np.ndarray, np.ndarray],
        train_features: np.ndarray | None = None, table_k: int = 20,
    ) -> None:  # fmt: skip
        self.g, self.index = g.eval(), index
        self.train_features = None if train_features is None else l2_normalize(train_features)  # (N, F)
        self.head = head  # the backbone's ImageNet head: weight (C, F), bias (C,)
        self.head_rows = head_rows  # (W,) open-index row of each head word
        sims, nn_idx = index.rows_search(head_rows, table_k)  # (W, k): own word first
        self.table, self.table_sims = nn_idx, sims
        self.noise_cache: NoiseCache = {}  # (seed, samples) -> the first image's draws (sample_words)

    @classmethod
    def load(
        cls, ckpt: dict[str, Any], index: TagIndex, head: tuple[np.ndarray, np.ndarray],
        train_features: np.ndarray | None = None,
    ) -> OpenDecoder:  # fmt: skip
        cfg = OpenCGANConfig(**ckpt["config"]["model"])
        g = Generator(cfg)
        g.load_state_dict(ckpt["state_dict"]["generator"])
        words = ckpt["config"]["head"]
        missing = [w for w in words if w not in index.word_index]
        if missing:
            from tagan.errors import UserError

            raise UserError(
                f"open CGAN head words missing from the open index ({missing[:3]}); rebuild the model"
            )
        rows = np.array([index.word_index[w] for w in words], dtype=np.int64)
        return cls(g, rows, index, head, train_features)

    def gate(self, features: np.ndarray, feature_gate: float) -> np.ndarray:
        """1 for images whose cosine to the nearest training image is >= feature_gate, else 0: (B,)."""
        if feature_gate <= 0:
            return np.ones(len(features), np.float32)
        if feature_gate > 1 or self.train_features is None:
            return np.zeros(len(features), np.float32)
        nearest = (l2_normalize(features) @ self.train_features.T).max(axis=1)  # (B,)
        return (nearest >= feature_gate).astype(np.float32)

    def inputs(
        self, features: np.ndarray, feature_gate: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(posterior (B, C), features (B, F), gate (B,)) for G."""
        f = np.asarray(features, dtype=np.float32)
        x = torch.from_numpy(f)
        post = torch.from_numpy(posterior(f, self.head).astype(np.float32))  # (B, C)
        return post, x, torch.from_numpy(self.gate(f, feature_gate))

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
        ids = sample_words(self.g, post, x, gate, samples, seed, self.noise_cache).numpy()  # (B, S)
        b = ids.shape[0]
        idx, sims = self.table[ids, :k].reshape(b, -1), self.table_sims[ids, :k].reshape(b, -1)  # (B, S*k)
        return count_votes(idx, sims, self.index.words, top_k=top_k, mask=mask)

    @torch.no_grad()
    def expected_votes(
        self, post: torch.Tensor, x: torch.Tensor, gate: torch.Tensor, samples: int, k: int, top_k: int, seed: int,
        mask: np.ndarray | None,
    ) -> Tags:  # fmt: skip
        """Each word's expected vote share: softmax(G's logits) averaged over `samples` noise draws (one set for
        every image), each head word's probability given to its k nearest words."""
        gen = torch.Generator().manual_seed(seed)
        noise = self.g.noise_logits(torch.randn(samples, self.g.cfg.noise_dim, generator=gen))  # (S, W)
        base = self.g.cond_logits(post, x, gate)  # (B, W)
        probs = torch.cat(
            [F.softmax(b[:, None, :] + noise[None], dim=2).mean(1) for b in base.split(16)]
        ).numpy()
        words = self.index.words
        votes = np.zeros((len(probs), len(words)))  # (B, V)
        for j in range(k):
            np.add.at(votes, (slice(None), self.table[:, j]), probs)
        votes /= k
        if mask is not None:
            votes[:, ~mask] = 0.0
        order = top_k_order(votes, top_k)
        return [[(words[j], float(v[j])) for j in row if v[j] > 0] for v, row in zip(votes, order)]
