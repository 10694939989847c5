"""A tagged image collection -> cleaned tags, capped series, group/image splits and the train vocabulary."""

from __future__ import annotations

import html
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagan.config import check
from tagan.errors import UserError
from tagan.readers import openclipart
from tagan.readers.images import TaggedImage

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Open Clip Art noise (OFFLINE.md): tool/theme names, packaging words, an author's name, English function words.
DEFAULT_STOP_TAGS = [
    "hash", "magick", "theme", "lemon_theme_icon", "icons", "unsorted", "special", "clipart", "clip", "art",
    "openclipart", "svg", "png", "inkscape", "image", "picture", "drawing", "illustration", "public", "domain",
    "architetto", "francesco", "rollandin", "mimetypes", "mime-types", "flat-theme", "lemon", "the", "a", "an",
    "and", "of", "in", "on", "for", "with", "to", "de", "la", "le", "el",
]  # fmt: skip


@dataclass
class CollectionConfig:
    """Where a tagged collection comes from and how its tags are cleaned, capped and split (params `tags_data`)."""

    source: Literal["openclipart", "mirflickr", "folder"] = "openclipart"
    openclipart_svg: Path = openclipart.SVG_ROOT
    openclipart_png: Path = openclipart.PNG_ROOT
    mirflickr_root: Path = Path("data/raw/mirflickr")  # archives are downloaded and extracted here
    mirflickr_images_url: str = "http://press.liacs.nl/mirflickr/mirflickr25k.v3b/mirflickr25k.zip"
    mirflickr_images_md5: str = "a23d0a8564ee84cda5622a6c2f947785"
    mirflickr_annotations_url: str = (
        "http://press.liacs.nl/mirflickr/mirflickr25k.v3b/mirflickr25k_annotations_v080.zip"
    )
    mirflickr_annotations_md5: str = ""  # empty: not checked (no published checksum)
    folder: Path | None = None  # source=folder: the photo library (XMP sidecars, embedded keywords, tags.csv)
    split_pattern: str = r"[\s,;|/]+"  # a keyword is split into tags on these separators
    word_pattern: str = r"[^\W\d_][\w'-]*[^\W\d_]"  # a tag must match this (>= 2 chars, letters at both ends)
    stop_tags: list[str] = field(default_factory=lambda: list(DEFAULT_STOP_TAGS))
    min_count: int = 5  # a tag enters the vocabulary with >= min_count uses in the train split
    max_per_group: int = 30  # cap per group (near-duplicate series); 0 = no cap
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, val, test
    split_by: Literal["group", "image"] = "group"  # which split the downstream stages use ("split" column)
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.min_count >= 1, "min_count", f"must be >= 1, got {self.min_count}")
        check(
            self.max_per_group >= 0, "max_per_group", f"must be >= 0 (0 = no cap), got {self.max_per_group}"
        )
        check(all(f >= 0 for f in self.fractions), "fractions", f"must be >= 0, got {list(self.fractions)}")
        check(abs(sum(self.fractions) - 1) < 1e-6, "fractions", f"must sum to 1, got {list(self.fractions)}")
        check(self.fractions[0] > 0, "fractions", "the train fraction must be > 0")
        for key in ("split_pattern", "word_pattern"):
            try:
                re.compile(getattr(self, key))
            except re.error as e:
                check(False, key, f"not a valid regular expression ({e})")
        check(self.source != "folder" or self.folder is not None, "folder", "required when source is folder")


def clean_tags(raw: Iterable[str], cfg: CollectionConfig) -> list[str]:
    """Lowercase, unescape, split on separators, keep word-like tags not in the stop-list; order kept, no repeats."""
    split = re.compile(cfg.split_pattern)
    word = re.compile(cfg.word_pattern)
    stop = {s.lower() for s in cfg.stop_tags}
    out: dict[str, None] = {}
    for keyword in raw:
        for token in split.split(html.unescape(keyword or "").lower()):
            token = token.strip("'-_")
            if token and token not in stop and word.fullmatch(token):
                out[token] = None
    return list(out)


def cap_groups(items: list[TaggedImage], max_per_group: int, seed: int) -> list[TaggedImage]:
    """Keep at most `max_per_group` images per group (a seeded random choice); input order kept."""
    if max_per_group <= 0:
        return items
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_group[item.group].append(i)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for group in sorted(by_group):
        idx = by_group[group]
        chosen = idx if len(idx) <= max_per_group else rng.choice(idx, size=max_per_group, replace=False)
        keep.update(int(i) for i in chosen)
    return [item for i, item in enumerate(items) if i in keep]


def _cut(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Boundaries (end of train, end of val) for n units."""
    a = int(round(fractions[0] * n))
    b = int(round((fractions[0] + fractions[1]) * n))
    return a, b


def split_by_image(ids: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, str]:
    """Seeded random split of images."""
    order = np.random.default_rng(seed).permutation(len(ids))
    a, b = _cut(len(ids), fractions)
    return {ids[i]: SPLITS[0 if r < a else 1 if r < b else 2] for r, i in enumerate(order)}


def split_by_group(
    groups: dict[str, str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Seeded split where whole groups go to one split, filled in shuffled group order by image count."""
    sizes = Counter(groups.values())
    names = sorted(sizes)
    order = np.random.default_rng(seed + 1).permutation(len(names))
    a, b = _cut(len(groups), fractions)
    split_of: dict[str, str] = {}
    seen = 0
    for i in order:
        name = names[i]
        mid = seen + sizes[name] / 2  # a group goes where its middle image falls
        split_of[name] = SPLITS[0 if mid < a else 1 if mid < b else 2]
        seen += sizes[name]
    return {image: split_of[group] for image, group in groups.items()}


def read_collection(cfg: CollectionConfig) -> list[TaggedImage]:
    """The collection's images with raw tags, from the configured source."""
    if cfg.source == "openclipart":
        return list(openclipart.read_openclipart(cfg.openclipart_svg, cfg.openclipart_png))
    if cfg.source == "mirflickr":
        from tagan.readers import mirflickr

        root = mirflickr.prepare(
            cfg.mirflickr_root,
            images=(cfg.mirflickr_images_url, cfg.mirflickr_images_md5),
            annotations=(cfg.mirflickr_annotations_url, cfg.mirflickr_annotations_md5),
        )
        return list(mirflickr.read_mirflickr(root))
    from tagan.readers import folder

    assert cfg.folder is not None
    return list(folder.read_folder(cfg.folder))


def _stats(rows: list[dict[str, Any]], column: str, prefix: str) -> dict[str, float]:
    """Per-split images, tags per image, distinct tags and groups under `column`."""
    out: dict[str, float] = {}
    for split in SPLITS:
        part = [r for r in rows if r[column] == split]
        n = len(part)
        out[f"{prefix}{split}_images"] = n
        out[f"{prefix}{split}_tags_per_image"] = round(sum(len(r["tags"]) for r in part) / n, 4) if n else 0.0
        out[f"{prefix}{split}_distinct_tags"] = len({t for r in part for t in r["tags"]})
        out[f"{prefix}{split}_groups"] = len({r["group"] for r in part})
    return out


def build(
    items: list[TaggedImage], cfg: CollectionConfig
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Clean, cap, split and build the vocabulary; returns (rows, vocab, metrics)."""
    n_read = len(items)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise UserError(f"duplicate image id {dup!r} in the {cfg.source} collection; ids must be unique")
    cleaned = [TaggedImage(it.id, it.path, it.group, clean_tags(it.tags, cfg)) for it in items]
    tagged = [it for it in cleaned if it.tags]
    capped = cap_groups(tagged, cfg.max_per_group, cfg.seed)
    if not capped:
        raise UserError(
            f"no tagged images in the {cfg.source} collection after cleaning; check the source path"
        )
    split_group = split_by_group({it.id: it.group for it in capped}, cfg.fractions, cfg.seed)
    split_image = split_by_image([it.id for it in capped], cfg.fractions, cfg.seed)
    chosen = split_group if cfg.split_by == "group" else split_image

    train_counts = Counter(t for it in capped if chosen[it.id] == "train" for t in it.tags)
    vocab = sorted(t for t, c in train_counts.items() if c >= cfg.min_count)
    if not vocab:
        raise UserError(f"no tag has >= {cfg.min_count} train uses; lower tags_data.min_count")
    in_vocab = set(vocab)
    rows = []
    for it in capped:
        tags = [t for t in it.tags if t in in_vocab]
        if tags:
            rows.append(
                {"id": it.id, "path": str(it.path), "group": it.group, "tags": tags,
                 "split": chosen[it.id], "split_image": split_image[it.id]}
            )  # fmt: skip
    for r in rows:  # the "split" column is the chosen one; keep split_group visible when split_by=image
        r["split_group"] = split_group[r["id"]]
    metrics: dict[str, Any] = {
        "source": cfg.source,
        "images_read": n_read,
        "images_tagged": len(tagged),
        "images_after_cap": len(capped),
        "images": len(rows),
        "groups": len({r["group"] for r in rows}),
        "vocab_size": len(vocab),
        "tags_per_image": round(sum(len(r["tags"]) for r in rows) / len(rows), 4) if rows else 0.0,
        **_stats(rows, "split", ""),
        **_stats(rows, "split_image", "by_image_"),
    }
    empty = [s for s in SPLITS if metrics[f"{s}_images"] == 0 and cfg.fractions[SPLITS.index(s)] > 0]
    if empty:
        log.warning(
            "split %s is empty: too few %ss (%d) for the fractions; use more groups or set tags_data.split_by: image",
            "/".join(empty), cfg.split_by, metrics["groups"] if cfg.split_by == "group" else metrics["images"],
        )  # fmt: skip
    vocab_obj = {"tags": vocab, "train_counts": {t: train_counts[t] for t in vocab}}
    return rows, vocab_obj, metrics
