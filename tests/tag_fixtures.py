"""Tiny generated tagging data (items.jsonl, vocab.json, features.npz) for the tagging-branch tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# a tag CGAN small enough for one-second tests (TagCGANConfig fields: tag_cgan.<preset>.model)
TINY_TAG_CGAN = dict(
    noise_dim=4,
    g_noise_hidden=8,
    g_cond_hidden=16,
    d_tag_hidden=8,
    d_cond_hidden=12,
    d_maxout_units=6,
    d_maxout_pieces=2,
)


def tiny_tag_cgan_params(
    model: dict | None = None, optim: dict | None = None, train: dict | None = None, **top: object
) -> dict:
    """A `tag_cgan.<preset>` params section for tests: TINY_TAG_CGAN's network, 6 steps of batch 8;
    the dicts update each section (feed it to config.from_dict with pipeline.tag_cgan.Params)."""
    return {
        "model": {**TINY_TAG_CGAN, **(model or {})},
        "optim": optim or {},
        "train": {"steps": 6, "batch_size": 8, "log_every": 2, "checkpoint_every": 0, **(train or {})},
        **top,
    }


TOPICS = {
    "animals": ["cat", "dog", "pet"],
    "food": ["fruit", "apple", "lemon"],
    "signs": ["arrow", "sign", "road"],
    "music": ["guitar", "note", "sound"],
}


def make_tag_data(
    root: Path, *, groups_per_topic: int = 8, per_group: int = 4, dim: int = 16, seed: int = 0
) -> dict[str, Path]:
    """Write items.jsonl, vocab.json and features.npz: each group shares a topic; features cluster by topic."""
    rng = np.random.default_rng(seed)
    centres = {t: rng.normal(size=dim) * 3 for t in TOPICS}
    items, feats = [], []
    group_ids = [(t, g) for t in TOPICS for g in range(groups_per_topic)]
    order = rng.permutation(len(group_ids))
    n_g = len(group_ids)
    gsplit = {
        group_ids[j]: ("train" if r < 0.6 * n_g else "val" if r < 0.8 * n_g else "test")
        for r, j in enumerate(order)
    }
    for topic, g in group_ids:
        for i in range(per_group):
            words = TOPICS[topic]
            tags = sorted(set(rng.choice(words, size=2, replace=True).tolist()))
            item_id = f"{topic}/{g}/{i}"
            items.append(
                {
                    "id": item_id,
                    "path": str(root / f"{topic}_{g}_{i}.png"),
                    "group": f"{topic}/{g}",
                    "tags": tags,
                    "split": gsplit[(topic, g)],
                    "split_image": ["train", "train", "val", "test"][i % 4],
                }
            )
            feats.append(np.abs(centres[topic] + rng.normal(size=dim)))
    root.mkdir(parents=True, exist_ok=True)
    paths = {"items": root / "items.jsonl", "vocab": root / "vocab.json", "features": root / "features.npz"}
    paths["items"].write_text("".join(json.dumps(it) + "\n" for it in items))
    vocab = sorted({t for ts in TOPICS.values() for t in ts})
    counts = {t: sum(t in it["tags"] for it in items if it["split"] == "train") for t in vocab}
    paths["vocab"].write_text(json.dumps({"tags": vocab, "train_counts": counts}))
    np.savez(
        paths["features"],
        ids=np.array([it["id"] for it in items]),
        features=np.array(feats, dtype=np.float32),
        backbone=np.array("tiny"),
    )
    return paths
