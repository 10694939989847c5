"""The training-free open-vocabulary methods from the ImageNet posterior: imagenet_names, conse, wordnet (registered kinds).

Nothing is fitted: each reads the bundle's ImageNet head and open vocabulary (the maths: tagan.tagging.open_vocab).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tagan.errors import UserError
from tagan.tagging.index import Tags, decode_votes, top_from_scores
from tagan.tagging.methods.base import Method, Resources, register_method
from tagan.tagging.open_vocab import WordNetPosterior, conse_vectors, imagenet_names


@register_method("imagenet_names")
class ImageNetNames(Method):
    """The names of the backbone's most probable ImageNet classes, scored by their probability."""

    vocabulary = "open"

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        names = self.resources.classes().names
        probs = self.resources.posterior(np.asarray(features, dtype=np.float32))
        if allowed is not None:
            probs = probs * np.array([n in allowed for n in names])
        return [[(w, p) for w, p in row if p > 0] for row in imagenet_names(probs, names, top_k)]


@dataclass
class ConSESettings:
    top: int = 10  # classes in the convex combination


@register_method("conse")
class ConSE(Method):
    """ConSE: the top classes' word vectors weighted by probability; the nearest open words (cosine votes)."""

    vocabulary = "open"
    Settings = ConSESettings

    def __init__(self, settings: Any, resources: Resources) -> None:
        super().__init__(settings, resources)
        names, index = resources.classes().names, self.index
        missing = [n for n in names if n not in index.word_index]
        if missing:
            raise UserError(f"ImageNet class names missing from the open index: {', '.join(missing[:5])}")
        self.class_vectors = index.vectors[[index.word_index[n] for n in names]]  # (C, D)

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        probs = self.resources.posterior(np.asarray(features, dtype=np.float32))
        vec = conse_vectors(probs, self.class_vectors, self.settings.top)  # (B, D)
        return decode_votes(
            vec[:, None, :], self.index, neighbors=top_k, top_k=top_k, allowed=allowed, weighted=True
        )


@dataclass
class WordNetSettings:
    beta: float = 1.0  # specificity exponent
    gamma: float = 1.0  # word-frequency exponent


@register_method("wordnet")
class WordNet(Method):
    """The posterior spread up WordNet's hypernyms, weighted by specificity**beta and usability**gamma."""

    vocabulary = "open"
    Settings = WordNetSettings

    def __init__(self, settings: Any, resources: Resources) -> None:
        super().__init__(settings, resources)
        self.model = WordNetPosterior.build(resources.vocabulary(), resources.classes())

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        probs = self.resources.posterior(np.asarray(features, dtype=np.float32))
        scores = self.model.scores(probs, self.settings.beta, self.settings.gamma)
        return top_from_scores(scores, self.model.words, top_k, allowed)
