"""Scoring tag predictions on a split, and each method's P@5 margin over the prior with a group-bootstrap interval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagan import metrics
from tagan.tagging.index import TagData, Tags


def words_of(tags: Tags) -> list[list[str]]:
    """The ranked words of each image, scores dropped."""
    return [[w for w, _ in row] for row in tags]


def score(tags: Tags, data: TagData, rows: np.ndarray, vocab_size: int) -> dict[str, float]:
    """Tagging metrics of `tags` (one list per row of `rows`) against the rows' user tags."""
    return metrics.tagging_metrics(words_of(tags), [set(data.tags[r]) for r in rows], vocab_size)


def precision_at_k_per_image(
    predicted: Sequence[Sequence[str]], truth: Sequence[set[str] | Sequence[str]], k: int
) -> np.ndarray:
    """P@k of every image with truth (the images `precision_recall_at_k` averages), in order."""
    return np.array([len(set(list(p)[:k]) & set(t)) / k for p, t in zip(predicted, truth) if set(t)])


def paired_group_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    groups: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of a - b (per-image scores of two methods on the same images) and its bootstrap interval.

    Whole groups are resampled with replacement (a cluster bootstrap): images of one group (a folder, a
    series) are not independent, so resampling images alone would give far too narrow an interval.
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    groups = np.asarray(groups)
    if diff.shape != groups.shape or diff.size == 0:
        raise ValueError(f"need one group per image, got {groups.shape} groups for {diff.shape} scores")
    _, inverse = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(inverse, weights=diff), np.bincount(inverse).astype(np.float64)  # per group
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(sums), size=(resamples, len(sums)))  # (R, G) groups drawn per resample
    means = sums[pick].sum(1) / counts[pick].sum(1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(lo), float(hi)


def add_prior_margins(
    table: dict[str, dict[str, float]], preds: dict[str, Tags], data: TagData, rows: np.ndarray, seed: int
) -> None:
    """Each method's P@5 minus the prior's on the same test images, with a 95% interval from resampling
    whole test groups (`p_at_5_vs_prior`, `_lo`, `_hi`): the test split holds few groups, so a margin
    of a few hundredths can be noise."""
    if "prior" not in preds:
        return
    tagged = [r for r in rows if data.tags[r]]
    truth, groups = [set(data.tags[r]) for r in tagged], [data.groups[r] for r in tagged]
    prior = precision_at_k_per_image(words_of(preds["prior"]), truth, 5)
    for name, tags in preds.items():
        if name == "prior" or name not in table:
            continue
        mine = precision_at_k_per_image(words_of(tags), truth, 5)
        margin, lo, hi = paired_group_bootstrap(mine, prior, groups, seed=seed)
        table[name].update(p_at_5_vs_prior=margin, p_at_5_vs_prior_lo=lo, p_at_5_vs_prior_hi=hi)
