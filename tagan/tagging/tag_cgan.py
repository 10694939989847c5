"""Training the tag CGAN: its (image, tag) pairs, its trainer task, and validation scores of a generator.

`TagCGANTask` plugs `tagan.models.tag_cgan` into `tagan.gan.fit`: D sees (tag vector, image feature)
pairs, G draws fresh noise for its own step, and two optional terms join the GAN losses: real tags on
the wrong image shown to D as fake (a matching-aware D) and the real tag's cross-entropy under G's
vocabulary softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import config, gan, metrics, training
from tagan.errors import UserError
from tagan.models.tag_cgan import (
    DataSizes,
    Discriminator,
    Generator,
    TagCGANConfig,
    build,
    sample,
    sample_noise,
)
from tagan.tagging.index import TagData, TagIndex, decode_votes


@dataclass
class TagTrainConfig(gan.TrainConfig):
    """The trainer's settings plus the tag CGAN's own loss terms."""

    mismatch: float = 0.0  # weight of (real tag, wrong image) pairs shown to D as fake (matching-aware D)
    aux_weight: float = 0.0  # vocab head only: cross-entropy of the real tag under G's vocabulary softmax
    # the real tag vectors D sees (and G learns to make) are the unit word vectors times this; sqrt(tag_dim)
    # gives unit-variance components, like the standardised image features (decoding is by cosine)
    tag_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        config.positive("tag_scale", self.tag_scale)
        config.check(self.mismatch >= 0, "mismatch", f"must be >= 0, got {self.mismatch}")
        config.check(self.aux_weight >= 0, "aux_weight", f"must be >= 0, got {self.aux_weight}")


def training_pairs(data: TagData, index: TagIndex, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One (image row, tag id) pair per tag of every `split` image (the paper's repetition)."""
    rows, tags = [], []
    for r in data.rows(split):
        for t in data.tags[r]:
            if t in index.word_index:
                rows.append(r)
                tags.append(index.word_index[t])
    if not rows:
        raise UserError(
            f"no {split} image has a tag in the embedding vocabulary; check tags_data and tag_embeddings"
        )
    return np.array(rows), np.array(tags)


def build_for_data(
    cfg: TagCGANConfig, data: TagData, index: TagIndex, rows: np.ndarray
) -> tuple[Generator, Discriminator, DataSizes]:
    """(G, D, sizes) for this data: feature norms fitted on the training images, the vocabulary's vectors
    in G's vocab head. Seed torch's RNG before calling it (the initial weights come from it)."""
    sizes = DataSizes(data.features.shape[1], index.dim, len(index))
    g, d = build(cfg, sizes)
    train_feats = torch.from_numpy(data.features[np.unique(rows)])
    g.norm.fit(train_feats)
    d.norm.fit(train_feats)
    if cfg.output == "vocab":
        g.vocab_vectors.copy_(torch.from_numpy(index.vectors))
    return g, d, sizes


class TagCGANTask(gan.GANTask):
    """(tag vector, image feature) pairs: D(t, x), G(z, x); every pair is one training tag of an image."""

    fresh_noise_for_g = True

    def __init__(
        self,
        features: torch.Tensor,
        vocab_vectors: torch.Tensor,
        rows: torch.Tensor,
        tag_ids: torch.Tensor,
        noise_dim: int,
        train: TagTrainConfig,
    ) -> None:
        self.features, self.vocab_vectors = features, vocab_vectors  # (N, F), (V, D)
        self.rows, self.tag_ids = rows, tag_ids  # (P,) image row and tag id of every pair
        self.noise_dim, self.mismatch, self.aux_weight = noise_dim, train.mismatch, train.aux_weight

    @classmethod
    def from_data(
        cls, data: TagData, index: TagIndex, rows: np.ndarray, tag_ids: np.ndarray, noise_dim: int,
        train: TagTrainConfig, device: torch.device,
    ) -> TagCGANTask:  # fmt: skip
        """The task with features, vocabulary vectors and pairs kept on `device` as tensors."""
        return cls(
            torch.from_numpy(data.features).to(device),
            torch.from_numpy(index.vectors).to(device) * train.tag_scale,
            torch.from_numpy(rows).to(device),
            torch.from_numpy(tag_ids).to(device),
            noise_dim,
            train,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def device(self) -> torch.device:
        return self.features.device

    def batch(self, idx: torch.Tensor) -> gan.Batch:
        tags = self.tag_ids[idx]  # (B,)
        return gan.Batch(self.vocab_vectors[tags], self.features[self.rows[idx]], tags)  # (B, D), (B, F)

    def generate(self, g: nn.Module, batch: gan.Batch) -> gan.Fake:
        x = batch.cond
        assert x is not None
        plain = training.unwrap(g)
        if "g_cond_hidden" not in batch.cache and plain.cond_hidden_is_fixed:
            # G's image branch before dropout does not change between the D step's and G's own G call (only
            # D learns in between): computed once per step, with its graph for G's step (same numbers)
            with torch.enable_grad():
                batch.cache["g_cond_hidden"] = plain.cond_hidden(x)  # (B, g_cond_hidden)
        z = sample_noise(len(x), plain.cfg, device=x.device)  # (B, Z)
        vec, logits = g(
            z, x, return_logits=True, cond_hidden=batch.cache.get("g_cond_hidden")
        )  # (B, D), (B, V)
        return gan.Fake(vec, x, z, logits)

    def d_extra(self, d: nn.Module, batch: gan.Batch, kind: gan.Loss) -> torch.Tensor | None:
        if not self.mismatch:
            return None
        assert batch.cond is not None
        wrong = d(batch.real, batch.cond.roll(1, dims=0))  # a real tag on another image of the batch
        return self.mismatch * gan.optim.fake_term(kind, wrong)

    def g_extra(self, fake: gan.Fake, batch: gan.Batch) -> torch.Tensor | None:
        if not self.aux_weight:
            return None
        assert fake.logits is not None and batch.target is not None
        return self.aux_weight * F.cross_entropy(fake.logits, batch.target)


# ---------------------------------------------------------------------------------------------- scores


def sample_hit_rate(g: Generator, data: TagData, index: TagIndex, split: str, samples: int = 20) -> float:
    """Share of generated vectors whose nearest vocabulary word is one of the image's tags."""
    rows = data.rows(split)
    if rows.size == 0:
        return float("nan")
    gen = sample(g, torch.from_numpy(data.features[rows]), samples, seed=1).numpy()  # (B, S, D)
    _, idx = index.search(gen.reshape(-1, gen.shape[-1]), 1)
    idx = idx.reshape(len(rows), samples)
    hits = [np.mean([index.words[j] in set(data.tags[r]) for j in idx[i]]) for i, r in enumerate(rows)]
    return float(np.mean(hits))


def val_p_at_5(
    g: Generator, data: TagData, index: TagIndex, samples: int, seed: int = 0, neighbors: int = 1
) -> float:
    """Val P@5 of G with `samples` generated vectors per image, each voting for its `neighbors` nearest words."""
    rows = data.rows("val")
    if rows.size == 0:
        return float("nan")
    was_training = g.training
    g.eval()
    device = next(g.parameters()).device
    gen = sample(g, torch.from_numpy(data.features[rows]).to(device), samples, seed)  # (B, S, D)
    g.train(was_training)
    tags = decode_votes(gen, index, neighbors=neighbors, top_k=5)
    predicted = [[w for w, _ in row] for row in tags]
    return metrics.tagging_metrics(predicted, [set(data.tags[r]) for r in rows], len(index))["p_at_5"]
