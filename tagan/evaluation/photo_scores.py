"""Scores of tags on labelled real photos: the broad rule, the specific rule of the headline, per kind of photo,
jargon, and generated images that deserve no keyword (noise, blank, gradients).

Specific rule (the headline, `specific_*`): a word counts when it is the label, a synonym, or one hypernym step
up (`Photo.accepted_specific`), and is not jargon (tagan.tagging.vocabulary: upper-ontology words and rare or
phrasal WordNet categories count as wrong even when true). `people_hit_at_10` / `scene_hit_at_10` /
`other_hit_at_10` are the specific hit@10 of each kind of photo. `jargon_share` is the share of top-5 words that
are jargon; `keywords_per_image` the mean number of words a photo gets (at most 10 here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagan.evaluation.accepted import is_accepted
from tagan.evaluation.photo_set import KINDS, Photo


def tag_metrics(
    predicted: list[list[str]], accepted: list[set[str]], training: set[str], wn: Any
) -> dict[str, float]:
    """hit@1, hit@10, P@5 (means over photos) and the share of correct top-10 words that are not training tags."""
    h1 = h10 = p5 = 0.0
    correct = novel = 0
    for words, acc in zip(predicted, accepted):
        ok = [is_accepted(w, acc, wn) for w in words[:10]]
        h1 += float(bool(ok) and ok[0])
        h10 += float(any(ok))
        p5 += sum(ok[:5]) / 5.0
        correct += sum(ok)
        novel += sum(o and w not in training for w, o in zip(words[:10], ok))
    n = max(len(predicted), 1)
    return {
        "hit_at_1": h1 / n,
        "hit_at_10": h10 / n,
        "p_at_5": p5 / n,
        "non_training_share": novel / correct if correct else 0.0,
        "photos": float(len(predicted)),
    }


def specific_hits(
    predicted: list[list[str]], photos: Sequence[Photo], jargon: set[str], wn: Any
) -> np.ndarray:
    """(N, 10) bool: whether each of a photo's first 10 words is right under the specific rule (False past the end)."""
    out = np.zeros((len(photos), 10), dtype=bool)
    for i, (words, photo) in enumerate(zip(predicted, photos)):
        acc = set(photo.accepted_specific)
        for j, w in enumerate(words[:10]):
            out[i, j] = w not in jargon and is_accepted(w, acc, wn)
    return out


def photo_metrics(
    predicted: list[list[str]], photos: Sequence[Photo], training: set[str], jargon: set[str], wn: Any
) -> dict[str, float]:
    """Every metric of one method on some photos: broad (tag_metrics), specific, per kind, jargon, keywords."""
    m = tag_metrics(predicted, [set(p.accepted) for p in photos], training, wn)
    ok = specific_hits(predicted, photos, jargon, wn)
    m["specific_hit_at_10"] = float(ok.any(1).mean()) if len(photos) else 0.0
    m["specific_p_at_5"] = float(ok[:, :5].sum(1).mean() / 5) if len(photos) else 0.0
    for kind in KINDS:
        rows = [i for i, p in enumerate(photos) if p.kind == kind]
        m[f"{kind}_hit_at_10"] = float(ok[rows].any(1).mean()) if rows else 0.0
        m[f"{kind}_photos"] = float(len(rows))
    top5 = [w for words in predicted for w in words[:5]]
    m["jargon_share"] = sum(w in jargon for w in top5) / len(top5) if top5 else 0.0
    m["keywords_per_image"] = float(np.mean([len(w[:10]) for w in predicted])) if predicted else 0.0
    return m


def synthetic_images(out_dir: Path, count: int, seed: int) -> list[Path]:
    """`count` generated images with nothing to name (colour noise, grey noise, blank, gradients), as PNG files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        kind = ("noise", "grey_noise", "blank", "gradient")[i % 4]
        h, w = int(rng.integers(240, 480)), int(rng.integers(240, 480))
        if kind == "noise":
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == "grey_noise":
            arr = np.repeat(rng.integers(0, 256, (h, w, 1), dtype=np.uint8), 3, axis=2)
        elif kind == "blank":
            arr = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (h, w, 3)).copy()
        else:
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            t = np.linspace(0, 1, w)[None, :, None]
            arr = np.broadcast_to(a + (b - a) * t, (h, w, 3)).astype(np.uint8)
        path = out_dir / f"{kind}_{i:03d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def per_photo_specific_hit(
    predicted: list[list[str]], photos: Sequence[Photo], jargon: set[str], wn: Any
) -> np.ndarray:
    """(N,) 1.0 where a photo has a specific-rule hit in its first 10 words (for the paired bootstrap)."""
    return specific_hits(predicted, photos, jargon, wn).any(1).astype(np.float64)
