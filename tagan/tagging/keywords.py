"""The words a photo gets: a method's ranked words made into the keywords people use (`tagan tag`, photo_eval).

A method ranks vocabulary words with a score. `finish` turns that ranking into keywords:

1. jargon goes (the vocabulary's `jargon` flag: upper-ontology and rare or phrasal WordNet categories such as
   "consumer goods", "placental"; the rule is in tagan.tagging.vocabulary), and so does a second spelling of
   a word kept ("dishwasher" after "dish washer": spaces, hyphens and case aside, one keyword);
2. words for people come from the face detector's evidence (tagan.tagging.faces): a face makes "person", two
   or more "people", scored by the detector's confidence;
3. words known only from the training collection's tags (`collection`: no WordNet or ImageNet sense; the
   clip-art's icon, flag, filesystem, europe) only when `collection_words` (off for the clip-art bundle: on
   the photo val split none of them was right); broad words (WordNet categories: animal, dog, vehicle) are
   kept only up to `max_broad` per photo (the person words do not count);
4. a word is kept only when its score reaches `min_score` (`min_score_faces` on a photo with a face: around
   people the backbone sees their clothes and gear, "fur coat, weight, knee pad, maraca"), and the method's
   words at all only when the photo shows something the backbone knows (`noise_gate`): a photo gets none
   when its ImageNet posterior is flat (entropy above `max_entropy` nats; 6.91 is uniform) AND few of the
   backbone's feature channels fire (under `min_active`). Noise, blank and gradient images have both
   (4.5-6.7 nats, 12-28% of the channels); flat real photos (a forest, a canyon, a road) are flat only:
   33-81% of the channels fire. `top_k` is a ceiling, not a quota: a photo of noise gets nothing.

`Keywords` is stored in the bundle (info.json `keywords`), chosen on the real-photo val split (photo_eval).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagan import config
from tagan.tagging.index import Tags
from tagan.tagging.vocabulary import normalize


@dataclass
class Keywords:
    """How a method's ranking becomes keywords (params.yaml `tag_eval.keywords`)."""

    min_score: float = (
        0.0  # a word needs at least this score (the method's own scale: vote share, probability)
    )
    max_entropy: float = 7.0  # noise gate: posterior entropy (nats) above this ... (7: off)
    min_active: float = 1.0  # ... and a share of active feature channels below this: no method words
    max_broad: int = 1  # broad category words kept per photo
    min_score_faces: float = 0.0  # on a photo with a face, the method's words need at least this score too
    collection_words: bool = True  # words known only from the collection's tags (clip-art: icon, flag)
    faces: bool = True  # person words from the face detector
    min_worn: float = 1.0  # no face found: "person" when the posterior has this much on clothing (1: off)
    candidates: int = 40  # ranked words read per photo before filtering

    def __post_init__(self) -> None:
        config.check(self.min_score >= 0, "min_score", f"must be >= 0, got {self.min_score}")
        config.check(self.max_entropy > 0, "max_entropy", f"must be > 0, got {self.max_entropy}")
        config.in_range("min_active", self.min_active, 0.0, 1.0)
        config.check(self.max_broad >= 0, "max_broad", f"must be >= 0, got {self.max_broad}")
        config.check(
            self.min_score_faces >= 0, "min_score_faces", f"must be >= 0, got {self.min_score_faces}"
        )
        config.in_range("min_worn", self.min_worn, 0.0, 1.0)
        config.positive("candidates", self.candidates)


#: WordNet's clothing: the ImageNet classes (jersey, suit, jean, fur coat, cowboy boot, ...) a person wears.
CLOTHING = "clothing.n.01"


def clothing_classes(ancestors: Sequence[dict[str, int]]) -> np.ndarray:
    """The ImageNet classes under CLOTHING (ancestors: per class, the synsets at or above it)."""
    return np.array([c for c, anc in enumerate(ancestors) if CLOTHING in anc], dtype=np.int64)


#: A pooled feature channel counts as active above this (the backbone's features are post-ReLU means, >= 0).
ACTIVE_LEVEL = 1e-3


def noise_gate(features: np.ndarray, posterior: np.ndarray, keywords: Keywords) -> np.ndarray:
    """(B,) True where a photo shows nothing the backbone knows: a flat ImageNet posterior (B, C) and few active
    channels in its pooled features (B, F)."""
    entropy = -(posterior * np.log(np.maximum(posterior, 1e-12))).sum(axis=1)
    active = (np.asarray(features) > ACTIVE_LEVEL).mean(axis=1)
    return (entropy > keywords.max_entropy) & (active < keywords.min_active)


def person_words(evidence: np.ndarray | None) -> list[tuple[str, float]]:
    """(word, score) for people from one photo's face evidence (tagan.tagging.faces.face_evidence)."""
    from tagan.tagging.faces import face_count

    if evidence is None or face_count(evidence) == 0:
        return []
    best = float(evidence[1])
    return [("person", best), ("people", best)] if face_count(evidence) >= 2 else [("person", best)]


def finish(
    ranked: Tags,
    *,
    top_k: int,
    keywords: Keywords,
    jargon: set[str] = frozenset(),  # type: ignore[assignment]
    broad: set[str] = frozenset(),  # type: ignore[assignment]
    collection: set[str] = frozenset(),  # type: ignore[assignment]
    evidence: Sequence[np.ndarray | None] | None = None,
    gated: np.ndarray | None = None,
    allowed: set[str] | None = None,
    clothing: np.ndarray | None = None,
) -> Tags:
    """Per photo: the keywords of its ranked (word, score) list, best first, at most top_k (see module doc);
    `gated` (B,): photos that get no method words (`noise_gate`; None: none); `clothing` (B,): their posterior's
    mass on clothing (`clothing_classes`), "person" on a photo with no face found when it reaches `min_worn`."""
    out: Tags = []
    for i, row in enumerate(ranked):
        people = person_words(evidence[i]) if keywords.faces and evidence is not None else []
        if not people and clothing is not None and clothing[i] >= keywords.min_worn:
            people = [("person", float(clothing[i]))]  # clothes being worn: a person seen without a face
        if gated is not None and gated[i]:
            row = []  # nothing the backbone recognises: only what the face detector saw
        kept: list[tuple[str, float]] = []
        seen: set[str] = set()
        n_broad = 0
        floor = max(keywords.min_score, keywords.min_score_faces) if people else keywords.min_score
        for j, (word, score) in enumerate([*people, *row]):
            spelling = normalize(word).replace(" ", "")  # "dish washer", "dishwasher": one word
            if (
                spelling in seen
                or word in jargon
                or score < (keywords.min_score if j < len(people) else floor)
            ):
                continue
            if allowed is not None and word not in allowed:
                continue
            if word in collection and not keywords.collection_words and j >= len(people):
                continue
            if word in broad and j >= len(people):  # person words are not capped
                if n_broad >= keywords.max_broad:
                    continue
                n_broad += 1
            seen.add(spelling)
            kept.append((word, float(score)))
            if len(kept) >= top_k:
                break
        out.append(kept)
    return out
