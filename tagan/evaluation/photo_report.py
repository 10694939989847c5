"""The real-photo evaluation's report: tables per split and the validation grid of decoding settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tagan.evaluation.photo_set import Photo, summary, tag_metrics
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle

COLUMNS = [
    ("hit_at_1", "hit@1"),
    ("hit_at_10", "hit@10"),
    ("p_at_5", "P@5"),
    ("non_training_share", "not a training tag"),
]


def val_grid(
    bundle_dir: Path, grid: dict[str, list[dict[str, Any]]], x: np.ndarray, accepted: list[set[str]],
    training: set[str], wn: Any,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Val-split metrics of each method of the bundle under each settings change of `grid` (row: "name k=v ...")."""
    bundle, resources = Bundle.load(bundle_dir), methods.Resources(bundle_dir)
    out: dict[str, dict[str, float]] = {}
    for name, changes in grid.items():
        if name not in bundle.methods:
            continue
        method = methods.load_method(bundle_dir, name, bundle, resources)
        for change in changes:
            tags = method.variant(**change).tag(x, top_k=10)
            row = " ".join([name, *(f"{k}={v}" for k, v in change.items())])
            out[row] = tag_metrics([[w for w, _ in t] for t in tags], accepted, training, wn)
    return out


def table_md(table: dict[str, dict[str, float]]) -> str:
    """Markdown table of methods x photo metrics."""
    lines = ["| method | " + " | ".join(c for _, c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def report(
    tables: dict[str, dict[str, dict[str, float]]], grid: dict[str, dict[str, float]], photos: list[Photo],
    head: str, aliases: dict[str, str],
) -> str:  # fmt: skip
    """reports/photo_eval_table.md."""
    counts = summary(photos)
    n_val = sum(p.split == "val" for p in photos)
    return "\n".join([
        "# Real-photo evaluation\n",
        f"{len(photos)} labelled photos ({', '.join(f'{k} {v}' for k, v in counts.items())}); val {n_val} / "
        f"test {len(photos) - n_val} (grouped by label, stratified by source). A tag is correct when the "
        "accepted-word rule (tagan/evaluation/photo_set.py) accepts it: the label words, synonyms and hypernyms up to 8 steps "
        "minus generic upper-ontology words (strict: 2 steps). `not a training tag`: share of the correct top-10 "
        f"words that are not Open Clip Art training tags. Default method (`cgan`): {aliases.get('cgan', head)}.\n",
        "## Test split (headline)\n", table_md(tables["test"]),
        "\n## Test split, strict rule (2 hypernym steps)\n", table_md(tables["test_strict"]),
        "\n## Validation split (every choice was made here)\n", table_md(tables["val"]),
        "\n## Validation grid of the decoding settings (tag_eval params)\n", table_md(grid),
    ])  # fmt: skip
