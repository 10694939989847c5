"""The real-photo evaluation set: label parsing, the accepted-word rule, the val/test split, the real GCompris data."""

from __future__ import annotations

from pathlib import Path

import pytest
from wordnet_fixtures import GENERIC, mini_wordnet

from tagan.evaluation.accepted import accepted_words, is_accepted
from tagan.evaluation.photo_set import (
    KINDS,
    LABELS,
    SCRATCH_MEDIA,
    Photo,
    assign_splits,
    parse_credits,
    parse_explore_board,
    stem_key,
)

README = """Copyright: Someone
Source: https://example.org/a.jpg
License: CC0-1.0
Files:
hammer1.webp
hammer2.webp

Copyright: Other
License: Public Domain
Files: giraffe.webp
"""

BOARD = """
    property var tab: [
        {
            "image": "qrc:/x/question.svg",
            "title": qsTr("Giraffe"),
            "text": qsTr("The giraffe is the \\"tallest\\" mammal."),
            "image2": "qrc:/gcompris/src/activities/explore_world_animals/resource/animals/giraffe.webp",
            "text2": qsTr("Giraffe"),
        },
        {
            "title": qsTr("Eiffel Tower"),
            "text": qsTr("A tower in Paris."),
            "image2": "qrc:/x/france/eiffelTower.webp",
        }]
"""


def test_parse_credits_and_boards() -> None:
    c = parse_credits(README)
    assert c["hammer2.webp"].startswith("CC0-1.0") and c["giraffe.webp"].startswith("Public Domain")
    items = parse_explore_board(BOARD)
    assert [i[:2] for i in items] == [("giraffe.webp", "Giraffe"), ("eiffelTower.webp", "Eiffel Tower")]


def test_stem_key_and_label_table() -> None:
    assert stem_key("hammer7.webp") == "hammer" and stem_key("monument1.webp") == "monument1"
    assert all(isinstance(v.synsets, tuple) and v.synsets and v.kind in KINDS for v in LABELS.values())
    kinds = [v.kind for k, v in LABELS.items() if k.startswith("scratch:People/")]
    assert len(kinds) >= 50 and set(kinds) == {"people"}  # every cut-out row is a photo of people
    assert sum(v.kind == "scene" for v in LABELS.values()) >= 40


def test_accepted_word_rule(tmp_path: Path) -> None:
    wn, _, _ = mini_wordnet(tmp_path)
    p = Photo("x/golden", "golden retriever", ("golden_retriever.n.01",), "animal", "test", "CC0")
    broad = accepted_words(p, wn, max_hops=8, generic=GENERIC)
    assert {"golden retriever", "retriever", "dog", "domestic dog", "canine", "canid", "mammal", "animal",
            "beast"} <= broad  # fmt: skip
    assert not broad & {
        "organism",
        "being",
        "whole",
        "object",
        "entity",
        "cat",
        "frank",
    }  # generic / other senses
    strict = accepted_words(p, wn, max_hops=2, generic=GENERIC)
    assert (
        "dog" in strict and "canine" not in strict and "animal" in strict
    )  # the category word always counts
    specific = accepted_words(p, wn, max_hops=1, generic=GENERIC, category=False)
    assert specific == {
        "golden retriever",
        "retriever",
    }  # the label, a synonym, one step up: not dog, not animal
    e = Photo("x/eiffel", "eiffel tower", ("eiffel_tower.n.01",), "monument", "test", "CC0")
    acc = accepted_words(e, wn, generic=GENERIC)
    assert {"eiffel tower", "tower", "monument"} <= acc and "structure" not in acc
    assert is_accepted("Dogs", broad, wn) and is_accepted("golden_retriever", broad)
    assert not is_accepted("cat", broad, wn)


def test_splits_are_stratified_grouped_and_fixed() -> None:
    photos = [Photo(f"s{s}/{lab}{i}", f"label{lab}", ("x.n.01",), None, f"src{s}", "CC0")
              for s in range(2) for lab in range(20) for i in range(1 + lab % 3)]  # fmt: skip
    assign_splits(photos, 0.3, seed=0)
    first = [p.split for p in photos]
    assign_splits(photos, 0.3, seed=0)
    assert [p.split for p in photos] == first
    for s in range(2):
        members = [p for p in photos if p.source == f"src{s}"]
        share = sum(p.split == "val" for p in members) / len(members)
        assert 0.2 <= share <= 0.4
    by_label: dict[str, set[str]] = {}
    for p in photos:
        by_label.setdefault(p.source + p.label, set()).add(p.split)
    assert all(len(v) == 1 for v in by_label.values())
    # a new source moves no photo of the others (the split stays frozen as the set grows)
    extra = [Photo(f"new/{i}", f"n{i}", ("x.n.01",), None, "a_new_source", "CC0") for i in range(9)]
    assign_splits(photos + extra, 0.3, seed=0)
    assert [p.split for p in photos] == first
    # one person's poses are one group, whatever their labels
    poses = [
        Photo(f"p/{i}", ("man", "dancer")[i % 2], ("x.n.01",), None, "src9", "CC0", group="ann")
        for i in range(6)
    ]
    assign_splits(poses + extra, 0.5, seed=0)
    assert len({p.split for p in poses}) == 1


@pytest.mark.skipif(
    not Path("/usr/share/gcompris-qt/rcc/categorization.rcc").exists(),
    reason="Debian gcompris-qt-data missing",
)
def test_real_gcompris_photos() -> None:
    from tagan.evaluation.photo_set import collect_photos

    counts: dict[str, int] = {}
    for photo, blob in collect_photos(samples=False, scratch_media=None):
        counts[photo.source] = counts.get(photo.source, 0) + 1
        assert blob[:4] == b"RIFF" and blob[8:12] == b"WEBP" and photo.synsets
    assert counts["gcompris:categorization"] == 140 and counts["gcompris:erase"] == 33
    assert counts["gcompris:explore_monuments"] == 49


@pytest.mark.skipif(not SCRATCH_MEDIA.is_dir(), reason="Debian scratch missing")
def test_real_scratch_photos() -> None:
    import io

    from PIL import Image

    from tagan.evaluation.photo_set import collect_photos

    got = [
        (p, blob) for p, blob in collect_photos(Path("/nonexistent"), samples=False) if p.source == "scratch"
    ]
    rows = [k for k in LABELS if k.startswith("scratch:")]
    assert len(got) == len(rows) >= 100  # every labelled file is found
    people = [(p, b) for p, b in got if p.id.startswith("scratch/People/")]
    assert len(people) >= 50 and all(p.kind == "people" and p.group for p, _ in people)
    for _, blob in people[:5]:
        with Image.open(io.BytesIO(blob)) as im:
            assert max(im.size) == 640 and im.mode == "RGB"
