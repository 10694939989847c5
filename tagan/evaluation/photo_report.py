"""The real-photo evaluation's report: tables per split, the margin over the training-free methods, and the val
grids behind the chosen decodings and keyword rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagan.evaluation.photo_scores import per_photo_specific_hit, photo_metrics
from tagan.evaluation.photo_set import Photo, group_key, summary
from tagan.evaluation.scoring import paired_group_bootstrap
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle
from tagan.tagging.keywords import Keywords
from tagan.tagging.tagger import Tagger

FREE_METHODS = (
    "wordnet",
    "conse",
    "imagenet_names",
)  # training-free: nothing fitted, the ImageNet posterior only
COLUMNS = [
    ("specific_hit_at_10", "specific hit@10"),
    ("specific_p_at_5", "specific P@5"),
    ("people_hit_at_10", "people"),
    ("scene_hit_at_10", "scenes"),
    ("other_hit_at_10", "the rest"),
    ("hit_at_10", "broad hit@10"),
    ("p_at_5", "broad P@5"),
    ("jargon_share", "jargon in top 5"),
    ("keywords_per_image", "keywords"),
    ("noise_keywords_per_image", "keywords on noise"),
]


def add_free_margin(
    table: dict[str, dict[str, float]], preds: dict[str, list[list[str]]], photos: Sequence[Photo],
    rows: Sequence[int], jargon: set[str], wn: Any, seed: int,
) -> None:  # fmt: skip
    """`default`'s specific hit@10 minus the best training-free method's (on these rows), with a 95% interval from
    resampling whole groups (folders of one label, one person's poses): `specific_hit_at_10_vs_free[_lo|_hi]`."""
    free = [m for m in FREE_METHODS if m in table]
    if "default" not in table or not free:
        return
    best = max(free, key=lambda m: table[m]["specific_hit_at_10"])
    chosen = [photos[i] for i in rows]
    mine, theirs = (
        per_photo_specific_hit([preds[m][i] for i in rows], chosen, jargon, wn) for m in ("default", best)
    )
    margin, lo, hi = paired_group_bootstrap(mine, theirs, [group_key(p) for p in chosen], seed=seed)
    table["default"].update(
        specific_hit_at_10_vs_free=margin, specific_hit_at_10_vs_free_lo=lo, specific_hit_at_10_vs_free_hi=hi
    )


def val_grid(
    bundle_dir: Path, grid: dict[str, list[dict[str, Any]]], x: np.ndarray, photos: Sequence[Photo],
    training: set[str], jargon: set[str], wn: Any,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Val-split metrics of each method of the bundle under each settings change of `grid` (row: "name k=v ...")."""
    bundle, resources = Bundle.load(bundle_dir), methods.Resources(bundle_dir)
    out: dict[str, dict[str, float]] = {}
    for name, changes in grid.items():
        if name not in bundle.methods:
            continue
        method = methods.load_method(bundle_dir, name, bundle, resources)
        for change in changes:
            tagger = Tagger(bundle_dir, name, bundle, method.variant(**change))
            tags = tagger.tag(x, top_k=10, rules=raw_rules(bundle))
            row = " ".join([name, *(f"{k}={v}" for k, v in change.items())])
            out[row] = photo_metrics([[w for w, _ in t] for t in tags], photos, training, jargon, wn)
    return out


def keywords_grid(
    bundle_dir: Path, names: Sequence[str], variants: Sequence[dict[str, Any]], x: np.ndarray,
    evidence: Sequence[np.ndarray | None], noise: tuple[np.ndarray, list[np.ndarray | None]],
    photos: Sequence[Photo], training: set[str], jargon: set[str], wn: Any,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Val-split metrics of candidate default methods (with face words) under each variant of the bundle's
    keyword rules (a dict of Keywords fields: min_score, max_entropy, min_active, collection_words)."""
    bundle = Bundle.load(bundle_dir)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        if name not in bundle.methods:
            continue
        tagger = Tagger.load(bundle_dir, name)
        for change in variants:
            rules = dataclasses.replace(bundle.keywords, faces=True, **change)
            tags = tagger.tag(x, top_k=10, evidence=evidence, rules=rules)
            m = photo_metrics([[w for w, _ in t] for t in tags], photos, training, jargon, wn)
            made = tagger.tag(noise[0], top_k=10, evidence=noise[1], rules=rules)
            m["noise_keywords_per_image"] = float(np.mean([len(t) for t in made]))
            out[f"keywords {name} " + " ".join(f"{k}={v}" for k, v in change.items())] = m
    return out


def raw_rules(bundle: Bundle) -> Keywords:
    """A method's ranking as it is: no jargon, the broad-word cap, no threshold, no noise gate, no face words."""
    return Keywords(max_broad=bundle.keywords.max_broad, faces=False, candidates=bundle.keywords.candidates)


def table_md(table: dict[str, dict[str, float]]) -> str:
    """Markdown table of methods x photo metrics."""
    lines = ["| method | " + " | ".join(c for _, c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" if k in m else "" for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def report(
    tables: dict[str, dict[str, dict[str, float]]], grid: dict[str, dict[str, float]], photos: list[Photo],
    default: str, aliases: dict[str, str],
) -> str:  # fmt: skip
    """reports/photo_eval_table.md."""
    counts = summary(photos)
    kinds = {k: sum(p.kind == k for p in photos) for k in ("people", "scene", "other")}
    n_val = sum(p.split == "val" for p in photos)
    d = tables["test"].get("default", {})
    margin = (
        f"`default` minus the best training-free method, specific hit@10 on test: "
        f"{d['specific_hit_at_10_vs_free']:+.3f} [{d['specific_hit_at_10_vs_free_lo']:+.3f}, "
        f"{d['specific_hit_at_10_vs_free_hi']:+.3f}] (95%, resampling whole label groups).\n"
        if "specific_hit_at_10_vs_free" in d
        else ""
    )
    return "\n".join([
        "# Real-photo evaluation\n",
        f"{len(photos)} labelled photos ({', '.join(f'{k} {v}' for k, v in counts.items())}; "
        f"{', '.join(f'{k} {v}' for k, v in kinds.items())}); val {n_val} / test {len(photos) - n_val} (grouped by "
        "label or person, stratified by source). Specific rule (the headline): a word counts when it is the label, "
        "a synonym or one hypernym step up, and is not jargon. Broad rule: hypernyms up to 8 steps, minus "
        "upper-ontology words. A method's row is its ranking without jargon, no threshold, no face words; `default` "
        f"is what plain `tagan tag` writes: {default} (aliases {aliases}), its threshold and face words.\n",
        margin,
        "## Test split (headline)\n", table_md(tables["test"]),
        "\n## Validation split (every choice was made here)\n", table_md(tables["val"]),
        "\n## Validation grids: decoding settings and keyword rules (tag_eval.chosen)\n", table_md(grid),
    ])  # fmt: skip
