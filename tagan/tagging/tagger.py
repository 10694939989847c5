"""The Tagger: cli.py's view of one method of a bundle (a thin facade over tagan.tagging.methods).

It checks what a user can get wrong (feature shape, an allowed-tag list outside the vocabulary) and adds what
the CLI shows: `info`, `words`, `path(word)`. The method decodes with the settings stored in the bundle (those
its test metrics were scored with); `samples` / `neighbors` override them for one call. Its ranking becomes
keywords by the bundle's rules (tagan.tagging.keywords): no jargon, person words from the face evidence, a
threshold (the default method's, chosen on real photos; 0 for the other methods unless `min_score` is given).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagan.errors import UserError
from tagan.tagging.bundle import Bundle
from tagan.tagging.index import Tags
from tagan.tagging.keywords import Keywords, clothing_classes, finish, noise_gate
from tagan.tagging.methods import Method, Resources, load_method


class Tagger:
    """Tags images from their backbone features with one method of a bundle written by tag_eval."""

    def __init__(self, model_dir: Path, method: str, bundle: Bundle, model: Method) -> None:
        self.model_dir, self.method, self.bundle, self.model = Path(model_dir), method, bundle, model
        self.words = model.words

    @classmethod
    def load(cls, model_dir: Path, method: str = "default") -> Tagger:
        """Open a bundle directory; unknown methods or missing files raise UserError naming the fix."""
        bundle = Bundle.load(model_dir)
        name = bundle.resolve(method)
        return cls(model_dir, name, bundle, load_method(model_dir, name, bundle, Resources(model_dir)))

    @property
    def info(self) -> dict[str, Any]:
        """The bundle's info.json as a dict, plus the method served and its decoding."""
        entry = self.bundle.methods[self.method]
        return {
            **self.bundle.to_json(),
            "backbone": self.bundle.features.backbone,
            "method": self.method,
            "decoding": {"kind": entry.kind, **entry.settings},
            "keywords": vars(self.keywords()),
        }

    def keywords(self, min_score: float | None = None) -> Keywords:
        """This method's keyword rules: the bundle's; its thresholds, noise gate and collection rule, chosen for the
        default method, apply to that method only (`min_score` overrides both thresholds)."""
        rules = self.bundle.keywords
        if self.bundle.aliases.get("default") != self.method:
            rules = dataclasses.replace(
                rules, min_score=0.0, min_score_faces=0.0, max_entropy=Keywords.max_entropy,
                min_active=Keywords.min_active, collection_words=True, min_worn=Keywords.min_worn,
            )  # fmt: skip
        if min_score is None:
            return rules
        return dataclasses.replace(rules, min_score=min_score, min_score_faces=min_score)

    @property
    def wants_faces(self) -> bool:
        """Whether tagging reads face evidence (tagan.tagging.faces)."""
        return self.bundle.keywords.faces

    @property
    def feature_dim(self) -> int:
        return self.bundle.feature_dim

    def tag(
        self,
        features: np.ndarray,
        *,
        top_k: int = 10,
        samples: int | None = None,
        seed: int = 0,
        allowed: Iterable[str] | None = None,
        neighbors: int | None = None,
        evidence: Sequence[np.ndarray | None] | None = None,
        min_score: float | None = None,
        rules: Keywords | None = None,
    ) -> Tags:
        """Keywords for images given their features (B, F) and face evidence (B items, or None): per image up to
        top_k (word, score), best first. `rules` replaces this method's keyword rules (photo_eval's grids)."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserError(
                f"features must be (B, {self.feature_dim}) from backbone {self.bundle.features.backbone}, "
                f"got {features.shape}; extract them with the bundle's backbone"
            )
        allowed_set = set(allowed) if allowed is not None else None
        if allowed_set is not None and not allowed_set & set(self.words):
            raise UserError("none of the allowed tags is in the model's vocabulary; check the tag list")
        settings = vars(self.model.settings)
        change = {k: v for k, v in (("samples", samples), ("neighbors", neighbors)) if k in settings}
        rules = self.keywords(min_score) if rules is None else rules
        ranked = self.model.variant(**change).tag(
            features, top_k=max(top_k, rules.candidates), seed=seed, allowed=allowed_set
        )
        resources = self.model.resources
        gated = clothing = None
        if resources.has_head() and (rules.max_entropy < np.log(1000) or rules.min_worn < 1.0):
            post = resources.posterior(features)
            if rules.max_entropy < np.log(1000):
                gated = noise_gate(features, post, rules)
            if rules.min_worn < 1.0 and self.clothing is not None:
                clothing = post[:, self.clothing].sum(axis=1)  # the posterior's mass on clothes
        return finish(
            ranked, top_k=top_k, keywords=rules, jargon=self.jargon, broad=self.broad, collection=self.collection,
            evidence=evidence, gated=gated, allowed=allowed_set, clothing=clothing,
        )  # fmt: skip

    @functools.cached_property
    def open_vocabulary(self) -> Any:
        """The bundle's open vocabulary when this method decodes into it, else None (training-tag methods)."""
        return self.model.resources.vocabulary() if self.model.vocabulary == "open" else None

    @functools.cached_property
    def jargon(self) -> set[str]:
        """Words never written (the open vocabulary's jargon; none for a training-tag method)."""
        return self.open_vocabulary.jargon if self.open_vocabulary is not None else set()

    @functools.cached_property
    def clothing(self) -> np.ndarray | None:
        """The ImageNet classes of clothes (keywords.min_worn), or None when the bundle lists no classes."""
        resources = self.model.resources
        return clothing_classes(resources.classes().ancestors) if resources.has_classes() else None

    @functools.cached_property
    def collection(self) -> set[str]:
        """Open-vocabulary words known only from the training collection's tags (no WordNet or ImageNet source)."""
        vocab = self.open_vocabulary
        return {e.word for e in vocab.entries if e.sources == ["training"]} if vocab is not None else set()

    @functools.cached_property
    def broad(self) -> set[str]:
        """Broad category words (at most `Keywords.max_broad` per photo; Vocabulary.capped)."""
        return self.open_vocabulary.capped if self.open_vocabulary is not None else set()

    def path(self, word: str) -> list[str]:
        """A short WordNet path of a tag in words people use, broad -> specific, ending with the word, at most
        three long ([] when the bundle has no vocabulary or nothing usable is above the word)."""
        vocab = self.model.resources.vocabulary()
        if vocab is None or word not in vocab.index:
            return []
        return vocab.path(word)
