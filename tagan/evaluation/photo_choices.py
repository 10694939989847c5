"""The open methods' decodings chosen on photo_eval's val grid (params.yaml `photo_eval.chosen`), read by tag_eval.

photo_eval scores the grid (`decoding_grid`) on its val photos; the choice sits next to that grid in params.yaml
and tag_eval bundles conse, wordnet and cgan_open with it: one value, read where it is used, never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tagan import config
from tagan.tagging.keywords import Keywords


@dataclass
class PhotoChoices:
    """params.yaml `photo_eval.chosen`: the open methods' settings picked on the photo val split."""

    conse_top: int = 3  # conse: classes in the convex combination
    wordnet_beta: float = 0.5  # wordnet: specificity exponent
    wordnet_gamma: float = 1.0  # wordnet: word-frequency exponent
    open_neighbors: int = 1  # cgan_open: words each sample votes for
    open_feature_gate: float = 0.55  # cgan_open: feature branch on at cosine >= this to a training image
    open_expected: bool = True  # cgan_open: rank by expected votes (True) or hard-sample counts
    min_score: float = 0.01  # the default method's keyword threshold (its score scale)
    min_score_faces: float = 0.1  # ... and on a photo with a face (the backbone sees clothes and gear there)
    max_entropy: float = 4.5  # noise gate: no keywords when the posterior's entropy (nats) is above this ...
    min_active: float = 0.32  # ... and fewer than this share of the backbone's feature channels fire
    max_broad: int = 1  # broad category words per photo
    collection_words: bool = False  # words known only from the collection's tags (clip-art: icon, flag)
    faces: bool = True  # person words from the face detector
    min_worn: float = 0.15  # no face found: "person" when the posterior has this much on clothing (1: off)

    def __post_init__(self) -> None:
        config.positive("conse_top", self.conse_top)
        config.positive("open_neighbors", self.open_neighbors)

    def keywords(self) -> Keywords:
        """The default method's keyword rules (tagan.tagging.keywords) these choices make: the fields they share."""
        names = {f.name for f in fields(Keywords)}
        return Keywords(**{k: v for k, v in vars(self).items() if k in names})


def decoding_grid(
    conse_tops: list[int], wordnet_values: list[float], open_neighbors: list[int], gates: list[float]
) -> dict[str, list[dict[str, Any]]]:
    """The val grid: per open method of the bundle, the settings changes tried (photo_eval's params)."""
    return {
        "conse": [{"top": top} for top in conse_tops],
        "wordnet": [{"beta": b, "gamma": g} for b in wordnet_values for g in wordnet_values],
        "cgan_open": [
            {"feature_gate": gate, "neighbors": nb, "expected": e}
            for gate in gates
            for nb in open_neighbors
            for e in (False, True)
        ],  # fmt: skip
    }
