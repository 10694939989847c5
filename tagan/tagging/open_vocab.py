"""Training-free open-vocabulary taggers from the backbone's ImageNet-1k posterior (baselines for the open CGAN).

* `imagenet_names`: the names (first WordNet lemma) of the most probable classes, as tags.
* `conse`: ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings",
  ICLR 2014): f(x) = sum_{t<=T} p(c_t|x) s(c_t) / sum_t p(c_t|x) over the top-T classes, s = the word
  vector of the class name; the tags are the vocabulary words nearest to f(x) (cosine, FAISS).
* `wordnet`: the posterior spread up the WordNet hypernym DAG, p(s) = sum of p(c) over the classes at or
  under synset s; each synset's vocabulary word scores p(s) * r(s)**beta * f(zipf)**gamma, with
  r(s) = 1 - log(n_s) / log(C) + 0.05 the specificity of a synset covering n_s of the C classes (the
  information gain of "Hedging your bets", Deng et al. CVPR 2012) and f(zipf) = clip((zipf - 2) / 3, 0.1, 1)
  favouring words people use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagan.tagging.index import TagIndex, Tags, top_k_order
from tagan.tagging.vocabulary import ImageNetClasses, Vocabulary
from tagan.tagging.wordnet import GENERIC_SYNSETS


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64: (B, C) -> (B, C)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def posterior(features: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The backbone's ImageNet-1k class probabilities (B, C) from its pooled features (B, F) and its head
    (weight (C, F), bias (C,)): the one posterior the open methods, the open CGAN and its training use."""
    return softmax(np.asarray(features, dtype=np.float32) @ head[0].T + head[1])


def zipf_weight(zipf: np.ndarray) -> np.ndarray:
    """How usable a word is, from its Zipf frequency: clip((zipf - 2) / 3, 0.1, 1)."""
    return np.clip((np.asarray(zipf, dtype=np.float64) - 2.0) / 3.0, 0.1, 1.0)


def imagenet_names(probs: np.ndarray, names: list[str], top_k: int) -> Tags:
    """The top-k class names of each image, scored by their class probability (B, C) -> tags."""
    order = np.argsort(-probs, axis=1, kind="stable")
    out: Tags = []
    for p, row in zip(probs, order):
        words: list[tuple[str, float]] = []
        seen: set[str] = set()
        for c in row:
            if names[c] not in seen:
                seen.add(names[c])
                words.append((names[c], float(p[c])))
            if len(words) >= top_k:
                break
        out.append(words)
    return out


def conse_vectors(probs: np.ndarray, class_vectors: np.ndarray, top: int) -> np.ndarray:
    """ConSE embeddings (B, D): the top-`top` classes' vectors weighted by their renormalised probabilities."""
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :top]  # (B, T)
    w = np.take_along_axis(probs, idx, axis=1)
    w = w / w.sum(axis=1, keepdims=True)  # (B, T)
    return np.einsum("bt,btd->bd", w, class_vectors[idx]).astype(np.float32)  # (B, D)


def conse(probs: np.ndarray, class_vectors: np.ndarray, index: TagIndex, *, top: int, top_k: int) -> Tags:
    """ConSE tags: the top_k vocabulary words nearest (cosine) to each image's convex combination."""
    scores, idx = index.search(conse_vectors(probs, class_vectors, top), top_k)
    return [
        [(index.words[j], float(s)) for s, j in zip(srow, irow) if j >= 0] for srow, irow in zip(scores, idx)
    ]


@dataclass
class WordNetPosterior:
    """Class -> word incidence for the `wordnet` tagger: m[c, j] = 1 when word j names a synset at/above class c."""

    words: list[str]  # (W,) one vocabulary word per synset
    m: np.ndarray  # (C, W) float32
    specificity: np.ndarray  # (W,) r(s)
    usability: np.ndarray  # (W,) f(zipf)

    @classmethod
    def build(
        cls, vocab: Vocabulary, classes: ImageNetClasses, generic: frozenset[str] = GENERIC_SYNSETS
    ) -> WordNetPosterior:
        """One word per synset reachable from the classes: the vocabulary's name for it."""
        synsets = sorted(
            {s for anc in classes.ancestors for s in anc if s not in generic and s in vocab.synset_words}
        )
        col = {s: j for j, s in enumerate(synsets)}
        m = np.zeros((len(classes.wnids), len(synsets)), np.float32)
        for c, anc in enumerate(classes.ancestors):
            for s in anc:
                if s in col:
                    m[c, col[s]] = 1.0
        words = [vocab.synset_words[s] for s in synsets]
        # two synsets named by one word (rare): keep the column covering more classes
        keep: dict[str, int] = {}
        for j, w in enumerate(words):
            if w not in keep or m[:, j].sum() > m[:, keep[w]].sum():
                keep[w] = j
        cols = np.array(sorted(keep.values()), dtype=np.int64)
        m = m[:, cols]
        n_under = np.maximum(m.sum(axis=0), 1.0)
        zipf = np.array([vocab.entries[vocab.index[words[j]]].zipf for j in cols])
        return cls(
            [words[j] for j in cols],
            m,
            (1.0 - np.log(n_under) / np.log(max(len(classes.wnids), 2)) + 0.05).astype(np.float32),
            zipf_weight(zipf).astype(np.float32),
        )

    def scores(self, probs: np.ndarray, beta: float, gamma: float) -> np.ndarray:
        """(B, W) scores p(s) * r(s)**beta * f(zipf)**gamma."""
        return (probs @ self.m) * (self.specificity**beta) * (self.usability**gamma)

    def tags(self, probs: np.ndarray, *, beta: float, gamma: float, top_k: int) -> Tags:
        s = self.scores(probs, beta, gamma)
        order = top_k_order(s, top_k)
        return [[(self.words[j], float(s[i, j])) for j in row] for i, row in enumerate(order)]
