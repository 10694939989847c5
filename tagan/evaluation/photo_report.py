"""The real-photo evaluation's report: tables per split and the validation grid of decoding settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tagan.evaluation.photo_set import Photo, summary, tag_metrics
from tagan.tagging.bundle import Bundle
from tagan.tagging.tagger import Tagger

COLUMNS = [
    ("hit_at_1", "hit@1"),
    ("hit_at_10", "hit@10"),
    ("p_at_5", "P@5"),
    ("non_training_share", "not a training tag"),
]


def val_grid(
    bundle_dir: Path, conse_tops: list[int], wordnet_values: list[float], open_neighbors: list[int], gates: list[float],
    x: np.ndarray, accepted: list[set[str]], training: set[str], wn: Any,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Val-split metrics of the decoding alternatives behind tag_eval's conse / wordnet / cgan_open settings."""
    out: dict[str, dict[str, float]] = {}

    def score(name: str, **change: Any) -> dict[str, float]:
        tagger = Tagger.load(bundle_dir, name)
        tagger.spec = replace(tagger.spec, **change)
        tagger._prepare()
        return tag_metrics([[w for w, _ in t] for t in tagger.tag(x, top_k=10)], accepted, training, wn)

    methods = Bundle.load(bundle_dir).methods
    if "conse" in methods:
        for top in conse_tops:
            out[f"conse top={top}"] = score("conse", top=top)
    if "wordnet" in methods:
        for beta in wordnet_values:
            for gamma in wordnet_values:
                out[f"wordnet beta={beta} gamma={gamma}"] = score("wordnet", beta=beta, gamma=gamma)
    if "cgan_open" in methods:
        for gate in gates:
            for nb in open_neighbors:
                out[f"cgan_open feature_gate={gate} neighbors={nb}"] = score(
                    "cgan_open", feature_gate=gate, neighbors=nb
                )
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
        "accepted-word rule (tagan/photos.py) accepts it: the label words, synonyms and hypernyms up to 8 steps "
        "minus generic upper-ontology words (strict: 2 steps). `not a training tag`: share of the correct top-10 "
        f"words that are not Open Clip Art training tags. Default method (`cgan`): {aliases.get('cgan', head)}.\n",
        "## Test split (headline)\n", table_md(tables["test"]),
        "\n## Test split, strict rule (2 hypernym steps)\n", table_md(tables["test_strict"]),
        "\n## Validation split (every choice was made here)\n", table_md(tables["val"]),
        "\n## Validation grid of the decoding settings (tag_eval params)\n", table_md(grid),
    ])  # fmt: skip
