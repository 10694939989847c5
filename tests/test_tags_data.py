"""tags_data: tag cleaning, series capping, deterministic group/image splits, vocabulary and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.tags_data import Params, run
from tagan.config import ParamsError, Runtime, from_dict
from tagan.readers.images import TaggedImage
from tagan.readers.items import read_items
from tagan.tagging.collection import build, cap_groups, clean_tags, split_by_group


def collection(n_groups: int = 20, per_group: int = 10) -> list[TaggedImage]:
    """Synthetic collection: group g's images share tag t{g%5} and carry 'common'."""
    return [
        TaggedImage(
            f"g{g}/i{i}", Path(f"/x/g{g}/i{i}.png"), f"g{g}", [f"tag{'abcde'[g % 5]}", "common", "hash"]
        )
        for g in range(n_groups)
        for i in range(per_group)
    ]


def test_clean_tags_lowercases_splits_and_drops_noise() -> None:
    cfg = Params()
    raw = ["Space Astronomy,Planet", "", "hash", "42", "&eacute;toile", "x", "north_america", "planet", "c++"]
    assert clean_tags(raw, cfg) == ["space", "astronomy", "planet", "étoile", "north_america"]


def test_cap_groups_is_deterministic_and_caps() -> None:
    items = collection(3, 50)
    a = cap_groups(items, 7, seed=1)
    assert len(a) == 21 and [x.id for x in a] == [x.id for x in cap_groups(items, 7, seed=1)]
    assert [x.id for x in a] != [x.id for x in cap_groups(items, 7, seed=2)]
    assert cap_groups(items, 0, seed=1) == items


def test_group_split_never_leaks_and_is_deterministic() -> None:
    groups = {f"g{g}/i{i}": f"g{g}" for g in range(40) for i in range(1 + g % 7)}
    s1 = split_by_group(groups, (0.6, 0.2, 0.2), seed=3)
    assert s1 == split_by_group(groups, (0.6, 0.2, 0.2), seed=3)
    split_of_group: dict[str, set[str]] = {}
    for image, split in s1.items():
        split_of_group.setdefault(groups[image], set()).add(split)
    assert all(len(s) == 1 for s in split_of_group.values())
    counts = {s: sum(v == s for v in s1.values()) for s in ("train", "val", "test")}
    assert all(counts[s] > 0 for s in counts) and counts["train"] > counts["val"]


def test_build_rows_follow_the_contract() -> None:
    cfg = Params(min_count=3, max_per_group=5, fractions=(0.6, 0.2, 0.2), seed=0)
    rows, vocab, metrics = build(collection(), cfg)
    assert vocab["tags"] == sorted(vocab["tags"]) and "hash" not in vocab["tags"]
    assert all(vocab["train_counts"][t] >= 3 for t in vocab["tags"])
    for r in rows:
        assert set(r) >= {"id", "path", "group", "tags", "split", "split_image"}
        assert r["tags"] and set(r["tags"]) <= set(vocab["tags"])
        assert r["split"] in ("train", "val", "test") and r["split_image"] in ("train", "val", "test")
    assert metrics["images"] == len(rows) == 100 and metrics["groups"] == 20
    assert metrics["train_images"] + metrics["val_images"] + metrics["test_images"] == 100
    # by group: a group's images share a split; by image they do not all have to
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())
    rows_image, _, _ = build(collection(), Params(min_count=3, max_per_group=5, split_by="image"))
    assert all(r["split"] == r["split_image"] for r in rows_image)


def test_vocabulary_counts_only_train_uses() -> None:
    """Each group has its own tag, used by all 4 of its images: in the vocabulary iff the group is in train."""
    own_tag = {f"g{g}": f"only{letter}" for g, letter in enumerate("abcdefghijkl")}
    items = [
        TaggedImage(f"{group}/i{i}", Path(f"/x/{group}/i{i}.png"), group, [tag, "common"])
        for group, tag in own_tag.items()
        for i in range(4)
    ]
    rows, vocab, metrics = build(items, Params(min_count=3, max_per_group=0, fractions=(0.5, 0.25, 0.25)))
    split_of = {
        r["group"]: r["split"] for r in rows
    }  # every image keeps a row ("common" is in the vocabulary)
    assert len(rows) == 48 and set(split_of.values()) == {"train", "val", "test"}
    train_groups = {group for group, split in split_of.items() if split == "train"}
    assert vocab["tags"] == sorted([own_tag[group] for group in train_groups] + ["common"])
    assert vocab["train_counts"] == {"common": 4 * len(train_groups), **{own_tag[g]: 4 for g in train_groups}}
    assert metrics["train_images"] == 4 * len(train_groups)
    for r in rows:  # val/test images keep only the tags train also uses
        assert r["tags"] == ([own_tag[r["group"]]] if r["group"] in train_groups else []) + ["common"]


def test_params_are_validated() -> None:
    with pytest.raises(ParamsError, match="tags_data.fractions: must sum to 1"):
        from_dict(Params, {"fractions": [0.5, 0.2, 0.2]}, "tags_data")
    with pytest.raises(ParamsError, match="tags_data.split_by"):
        from_dict(Params, {"split_by": "folder"}, "tags_data")
    with pytest.raises(ParamsError, match="tags_data.folder: required"):
        from_dict(Params, {"source": "folder"}, "tags_data")


def test_run_on_a_tiny_openclipart_tree(tmp_path: Path) -> None:
    svg_root, png_root = tmp_path / "svg", tmp_path / "png"
    ns = 'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    for g in range(6):
        for i in range(4):
            rel = Path(f"cat{g}/img{i}")
            (svg_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (png_root / rel).parent.mkdir(parents=True, exist_ok=True)
            tags = f"<rdf:li>shape{'ab'[g % 2]}</rdf:li><rdf:li>Hash</rdf:li>"
            (svg_root / rel).with_suffix(".svg").write_text(
                f"<svg {ns}><dc:subject><rdf:Bag>{tags}</rdf:Bag></dc:subject></svg>"
            )
            Image.new("L", (4, 4), g * 10 + i).save((png_root / rel).with_suffix(".png"))
    cfg = Params(openclipart_svg=svg_root, openclipart_png=png_root, min_count=1, fractions=(0.5, 0.25, 0.25))
    metrics = run(cfg, Runtime(), tmp_path / "tags", tmp_path / "m.json")
    rows = read_items(tmp_path / "tags" / "items.jsonl")
    vocab = json.loads((tmp_path / "tags" / "vocab.json").read_text())
    assert len(rows) == metrics["images"] > 0 and set(vocab["tags"]) <= {"shapea", "shapeb"}
    assert json.loads((tmp_path / "m.json").read_text())["source"] == "openclipart"
    assert (tmp_path / "tags" / "items.jsonl").read_text() == _rerun(cfg, tmp_path)


def _rerun(cfg: Params, tmp_path: Path) -> str:
    run(cfg, Runtime(), tmp_path / "tags2", tmp_path / "m2.json")
    return (tmp_path / "tags2" / "items.jsonl").read_text()
