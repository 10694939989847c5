"""Training data of the open tag CGAN: class -> WordNet word pairs (no photos needed) beside image -> human tag pairs.

Class pairs: a synthetic posterior peaked on ImageNet class c (mass a ~ U(a_min, 1) on c, the rest spread
over WordNet relatives of c and random classes, as real posteriors of a photo of c look), no image
features (gate 0), and a target word drawn from c's lemmas and the vocabulary names of its hypernyms
(at most `max_hops` up, generic and jargon words excluded: tagan never writes those), weighted towards
common words (wordfreq Zipf) and, with `specificity` > 0, towards specific ones (as the `wordnet` method's
r(s)**beta: a synset over fewer ImageNet classes weighs more; a photo's label is rarely its broadest word);
with `setting` > 0 the places c's gloss names join, each weighing `setting` times c's likeliest word
(lakeside -> lake, seashore -> sea, ocean: scenes ImageNet-1k has no class for; vocabulary.setting_words).
Image pairs: the collection's training images with their real features and posterior, one per human tag,
the features gated off with probability `feature_dropout` (modality dropout).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagan import config, gan
from tagan.tagging.open_vocab import zipf_weight
from tagan.tagging.vocabulary import ImageNetClasses, Vocabulary
from tagan.tagging.wordnet import GENERIC_SYNSETS


def head_words(vocab: Vocabulary, training_tags: list[str]) -> list[str]:
    """The words G can emit: ImageNet lemmas, their broader words, their settings and the training tags
    (vocabulary order)."""
    keep = {"imagenet", "hypernym", "setting"}
    tags = set(training_tags)
    return [e.word for e in vocab.entries if keep & set(e.sources) or e.word in tags]


def class_targets(
    classes: ImageNetClasses, vocab: Vocabulary, head: dict[str, int], *, max_hops: int,
    specificity: float = 0.0, setting: float = 0.0, generic: frozenset[str] = GENERIC_SYNSETS,
) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per class: (head ids of its lemmas and hypernym names within max_hops, then of its settings (each
    weighing `setting` times the likeliest of the others), sampling probabilities)."""
    out = []
    jargon = vocab.jargon
    under = Counter(s for anc in classes.ancestors for s in anc)  # synset -> ImageNet classes at or below it
    log_c = np.log(max(len(classes.ancestors), 2))
    settings = classes.settings or [[] for _ in classes.synsets]
    for own, lemmas, anc, places in zip(classes.synsets, classes.lemmas, classes.ancestors, settings):
        words: dict[str, str] = {w: own for w in lemmas if w in head}  # word -> the synset it names
        for syn, hops in sorted(anc.items(), key=lambda kv: (kv[1], kv[0])):
            if 0 < hops <= max_hops and syn not in generic:
                w = vocab.synset_words.get(syn)
                if w is not None and w in head and w not in jargon:
                    words.setdefault(w, syn)
        ids = np.array([head[w] for w in words], dtype=np.int64)
        z = np.array([vocab.entries[vocab.index[w]].zipf for w in words])
        spec = np.array([1.0 - np.log(under[syn]) / log_c + 0.05 for syn in words.values()])
        p = zipf_weight(z) * spec**specificity
        p = p / p.sum() if len(p) else p
        extra = [head[w] for w in places if w in head and w not in words and w not in jargon]
        if extra and setting > 0:  # each place weighs `setting` times the class's likeliest word
            ids = np.concatenate([ids, np.array(extra, dtype=np.int64)])
            p = np.concatenate([p, np.full(len(extra), setting * (p.max() if len(p) else 1.0))])
            p = p / p.sum()
        out.append((ids, p))
    return out


def related_classes(classes: ImageNetClasses, max_cover: int = 30) -> list[np.ndarray]:
    """Per class: the classes sharing a close ancestor with it (one covering at most `max_cover` classes)."""
    cover: dict[str, list[int]] = defaultdict(list)
    for c, anc in enumerate(classes.ancestors):
        for a in anc:
            cover[a].append(c)
    out = []
    for c, anc in enumerate(classes.ancestors):
        close = [a for a in anc if a != classes.synsets[c] and len(cover[a]) <= max_cover]
        out.append(np.array(sorted({x for a in close for x in cover[a]} - {c}), dtype=np.int64))
    return out


def prior_table(targets: list[tuple[np.ndarray, np.ndarray]], n_words: int) -> np.ndarray:
    """The (C, W) class -> word distribution of the class pairs, as G's fixed WordNet prior."""
    t = np.zeros((len(targets), n_words), np.float32)
    for c, (ids, p) in enumerate(targets):
        t[c, ids] = p
    return t


@dataclass
class ClassPairs:
    """Synthetic (posterior, target word) pairs from ImageNet classes and WordNet."""

    targets: list[tuple[np.ndarray, np.ndarray]]
    related: list[np.ndarray]
    a_min: float = 0.2

    def __post_init__(self) -> None:
        self.valid = np.array([c for c, (ids, _) in enumerate(self.targets) if len(ids)], dtype=np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(posteriors (n, C) float32, head word ids (n,))."""
        c_all = len(self.targets)
        cls = rng.choice(self.valid, size=n)
        post = np.zeros((n, c_all), np.float32)
        words = np.zeros(n, np.int64)
        for i, c in enumerate(cls):
            a = rng.uniform(self.a_min, 1.0)
            rel = self.related[c]
            k_rel = min(len(rel), 4)
            share_rel = rng.uniform(0, 1) if k_rel else 0.0
            post[i, c] += a
            if k_rel:
                post[i, rng.choice(rel, k_rel, replace=False)] += (
                    (1 - a) * share_rel * rng.dirichlet(np.ones(k_rel))
                )
            k_rand = min(5, c_all)
            post[i, rng.choice(c_all, k_rand, replace=False)] += (
                (1 - a) * (1 - share_rel) * rng.dirichlet(np.ones(k_rand))
            )
            ids, p = self.targets[c]
            words[i] = rng.choice(ids, p=p)
        return post, words


# ---------------------------------------------------------------------------------------------- trainer task


@dataclass
class OpenTrainConfig(gan.TrainConfig):
    """The trainer's settings plus the open CGAN's data mix and likelihood term (params.yaml `open_cgan.train`)."""

    aux_weight: float = 10.0  # cross-entropy of the target word under G's head softmax
    image_fraction: float = (
        0.5  # share of each batch from the collection's image -> tag pairs (rest: class pairs)
    )
    feature_dropout: float = 0.3  # image pairs: the feature branch gated off with this probability
    a_min: float = 0.2  # class pairs: the least posterior mass on the pair's class
    max_hops: int = 8  # class pairs: hypernym words up to this many steps above the class
    specificity: float = 2.0  # class pairs: target words weighted by r(s)**specificity (as wordnet's beta)
    setting: float = 1.0  # class pairs: weight of each place the class's gloss names (x its likeliest word)

    def __post_init__(self) -> None:
        super().__post_init__()
        config.check(self.aux_weight >= 0, "aux_weight", f"must be >= 0, got {self.aux_weight}")
        config.in_range("image_fraction", self.image_fraction, 0.0, 1.0)
        config.in_range("feature_dropout", self.feature_dropout, 0.0, 1.0)
        config.in_range("a_min", self.a_min, 0.0, 1.0)
        config.positive("max_hops", self.max_hops)
        config.check(self.specificity >= 0, "specificity", f"must be >= 0, got {self.specificity}")
        config.check(self.setting >= 0, "setting", f"must be >= 0, got {self.setting}")


class OpenCGANTask(gan.GANTask):
    """Mixed batches: image -> human tag pairs (real features and posterior) and class -> WordNet word pairs.

    The condition is one tensor (B, C + F + 1): posterior, features, feature gate. The class pairs of a batch
    are drawn with a numpy generator seeded by the batch's indices (deterministic, so resumes are exact).
    """

    fresh_noise_for_g = True

    def __init__(
        self, features: torch.Tensor, posteriors: torch.Tensor, rows: np.ndarray, words: np.ndarray,
        pairs: ClassPairs, head_vectors: torch.Tensor, noise_dim: int, train: OpenTrainConfig,
    ) -> None:  # fmt: skip
        self.features, self.posteriors = features, posteriors  # (N, F), (N, C)
        self.rows, self.words = rows, words  # (P,) image row and head word of every image pair
        self.pairs, self.head_vectors, self.noise_dim, self.train = pairs, head_vectors, noise_dim, train

    def __len__(self) -> int:
        return len(self.rows)

    def device(self) -> torch.device:
        return self.features.device

    def split(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(posterior (B, C), features (B, F), gate (B,)) from the packed condition."""
        c = self.posteriors.shape[1]
        return cond[:, :c], cond[:, c:-1], cond[:, -1]

    def batch(self, idx: torch.Tensor) -> gan.Batch:
        ids = idx.cpu().numpy()
        rng = np.random.default_rng(ids.tolist())
        n_img = int(round(len(ids) * self.train.image_fraction))
        img = ids[:n_img] % len(self.rows)
        post_c, words_c = self.pairs.sample(len(ids) - n_img, rng)
        dev = self.device()
        rows = torch.from_numpy(self.rows[img]).to(dev)
        gate = torch.from_numpy((rng.uniform(size=n_img) >= self.train.feature_dropout).astype(np.float32))
        post = torch.cat([self.posteriors[rows], torch.from_numpy(post_c).to(dev)])  # (B, C)
        feats = torch.cat(
            [self.features[rows], torch.zeros(len(ids) - n_img, self.features.shape[1], device=dev)]
        )
        gates = torch.cat([gate, torch.zeros(len(ids) - n_img)]).to(dev)  # class pairs have no image
        words = torch.from_numpy(np.concatenate([self.words[img], words_c])).to(dev)  # (B,)
        cond = torch.cat([post, feats, gates[:, None]], dim=1)  # (B, C + F + 1)
        return gan.Batch(self.head_vectors[words], cond, words)

    def generate(self, g: nn.Module, batch: gan.Batch) -> gan.Fake:
        assert batch.cond is not None
        z = torch.randn(len(batch.cond), self.noise_dim, device=batch.cond.device)  # (B, Z)
        vec, logits = g(z, *self.split(batch.cond))  # (B, D), (B, W)
        return gan.Fake(vec, batch.cond, z, logits)

    def discriminate(self, d: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        assert cond is not None
        return d(x, *self.split(cond))

    def g_extra(self, fake: gan.Fake, batch: gan.Batch) -> torch.Tensor | None:
        if not self.train.aux_weight:
            return None
        assert fake.logits is not None and batch.target is not None
        return self.train.aux_weight * F.cross_entropy(fake.logits, batch.target)
