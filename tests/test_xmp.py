"""XMP sidecars: keywords in the three places photo managers read, other fields kept, exact undo, exiftool agrees."""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

import pytest

from tagan.photos import sidecars, xmp_edit
from tagan.readers import xmp
from tests.xmp_fixtures import (
    DARKTABLE,
    DIGIKAM,
    KEYWORD_PROPERTIES,
    SIDECARS,
    as_list,
    exiftool,
    only,
    rdf_facts,
    without,
)

# the short digiKam sidecar other tests (test_cli) use
DIGIKAM_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
   xmp:Rating="4">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Holiday in Brittany</rdf:li></rdf:Alt></dc:title>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>beach</rdf:li>
     <rdf:li>Family</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <digiKam:TagsList><rdf:Seq><rdf:li>Places/Beach</rdf:li></rdf:Seq></digiKam:TagsList>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<!-- padding kept by photo tools -->
<?xpacket end="w"?>
"""
HYPERNYMS = {"dog": ["animal", "domestic animal"], "lighthouse": ["structure", "tower"], "cat": ["animal"]}
EXIFTOOL_KEYWORDS = {
    "Subject",
    "HierarchicalSubject",
    "TagsList",
}  # exiftool's names of the keyword properties
EXIFTOOL_TAGAN = {"Tagger", "Tags", "Created", "AddedSubject", "AddedHierarchicalSubject", "AddedTagsList"}
DC = "{http://purl.org/dc/elements/1.1/}subject"
LR = "{http://ns.adobe.com/lightroom/1.0/}hierarchicalSubject"
DK = "{http://www.digikam.org/ns/1.0/}TagsList"


def path_of(word: str) -> list[str]:
    """Hypernym paths as the model's vocabulary will supply them (issue 13)."""
    return HYPERNYMS.get(word, [])


def fields(path: Path) -> dict[str, list[str]]:
    """The three keyword properties, sorted (exactly what untag must restore)."""
    f = xmp.read_fields(path)
    return {k: sorted(f[k]) for k in ("subject", "hierarchicalSubject", "TagsList")}


def test_sidecar_names_follow_digikam_and_lightroom_conventions(tmp_path: Path) -> None:
    photo = tmp_path / "IMG 01.jpeg"
    assert xmp.sidecar_path(photo) == tmp_path / "IMG 01.jpeg.xmp"
    assert xmp.sidecar_path(photo, "stem") == tmp_path / "IMG 01.xmp"


def test_keyword_values_root_paths_and_separators() -> None:
    assert xmp_edit.keyword_values("dog", path_of, "tagan") == {
        "subject": "dog",
        "hierarchicalSubject": "tagan|animal|domestic animal|dog",
        "TagsList": "tagan/animal/domestic animal/dog",
    }
    assert (
        xmp_edit.keyword_values("sea", path_of, "tagan")["TagsList"] == "tagan/sea"
    )  # no path: under the root
    assert xmp_edit.keyword_values("dog", None, "auto/tagan")["hierarchicalSubject"] == "auto|tagan|dog"
    assert xmp_edit.keyword_values("dog", None, "")["hierarchicalSubject"] == "dog"
    assert xmp_edit.keyword_values("dog", lambda w: ["animal", "dog"], "t")["TagsList"] == "t/animal/dog"
    odd = xmp_edit.keyword_values("AC/DC", lambda w: ["music|band"], "t")  # separators never split a level
    assert odd == {
        "subject": "AC-DC",
        "hierarchicalSubject": "t|music-band|AC-DC",
        "TagsList": "t/music-band/AC-DC",
    }


def test_creates_minimal_valid_sidecar_with_all_keyword_properties(tmp_path: Path) -> None:
    sidecar = tmp_path / "chat é.jpg.xmp"
    change = sidecars.merge_keywords(
        sidecar, ["cat", "sofa", "cat"], model="m1", tags=[("cat", 0.5), ("sofa", 0.2)], path_of=path_of
    )
    assert change.created and change.added == ["cat", "sofa"]
    assert xmp.read_keywords(sidecar) == ["cat", "sofa"]
    assert xmp.read_model(sidecar) == "m1"
    assert xmp.read_tags(sidecar) == [("cat", 0.5), ("sofa", 0.2)]
    assert xmp.read_fields(sidecar) == {
        "subject": ["cat", "sofa"],
        "addedSubject": ["cat", "sofa"],
        "hierarchicalSubject": ["tagan|animal|cat", "tagan|sofa"],
        "addedHierarchicalSubject": ["tagan|animal|cat", "tagan|sofa"],
        "TagsList": ["tagan/animal/cat", "tagan/sofa"],
        "addedTagsList": ["tagan/animal/cat", "tagan/sofa"],
    }
    text = sidecar.read_text(encoding="utf-8")
    assert "<lr:hierarchicalSubject>\n    <rdf:Bag>" in text and "<digiKam:TagsList>\n    <rdf:Seq>" in text
    assert not sidecars.merge_keywords(
        tmp_path / "none.jpg.xmp", []
    ).sidecar.exists()  # no tags: no empty file


def test_merge_preserves_other_metadata_and_never_duplicates(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    change = sidecars.merge_keywords(sidecar, ["sea", "family", "beach"], model="m1")
    assert change.added == ["sea"] and change.kept == ["beach", "Family"]  # case-insensitive match
    again = sidecars.merge_keywords(sidecar, ["sea", "family", "beach"], model="m1")
    assert not again.changed and again.added == [] and not again.written
    assert xmp.read_keywords(sidecar) == ["beach", "Family", "sea"]
    text = sidecar.read_text(encoding="utf-8")
    for kept in ('xmp:Rating="4"', "Holiday in Brittany", "Places/Beach", "<!-- padding kept", "xpacket end"):
        assert kept in text
    assert "ns0:" not in text  # original namespace prefixes kept


def test_dry_run_reports_but_writes_nothing(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    change = sidecars.merge_keywords(sidecar, ["sea"], model="m1", dry_run=True)
    assert change.added == ["sea"] and change.properties["TagsList"]["add"] == ["tagan/sea"]
    assert sidecar.read_text(encoding="utf-8") == DIGIKAM_SIDECAR
    assert not sidecars.merge_keywords(tmp_path / "new.jpg.xmp", ["x"], dry_run=True).sidecar.exists()
    sidecars.merge_keywords(sidecar, ["sea"], model="m1")
    before = sidecar.read_bytes()
    undo = sidecars.remove_own(sidecar, dry_run=True)
    assert undo.removed == ["sea"] and sidecar.read_bytes() == before


@pytest.mark.parametrize("name", sorted(SIDECARS))
def test_realistic_sidecar_keeps_every_other_field_and_untag_restores_it(tmp_path: Path, name: str) -> None:
    original = SIDECARS[name]
    sidecar = tmp_path / f"IMG_0042.RAF.{name}.xmp"
    sidecar.write_text(original, encoding="utf-8")
    before = rdf_facts(original)
    change = sidecars.merge_keywords(
        sidecar, ["dog", "lighthouse", "sea"], model="m1", tags=[("dog", 0.5)], path_of=path_of
    )
    after = rdf_facts(sidecar.read_bytes())
    assert without(after) == without(before)  # every other field, struct and array item is unchanged
    for prop in KEYWORD_PROPERTIES:  # person keywords are all still there
        assert not Counter(only(before, prop)) - Counter(only(after, prop))
    assert "sea" in change.added and "tagan|animal|domestic animal|dog" in only(after, LR)
    assert "tagan/structure/tower/lighthouse" in only(after, DK)
    if "dog" in only(before, DC):  # a person's word is neither added again nor claimed
        assert "dog" not in change.added and only(after, DC).count("dog") == 1

    sidecars.remove_own(sidecar)
    assert rdf_facts(sidecar.read_bytes()) == before  # exactly the sidecar the person had


def test_person_word_added_before_tagan_survives_untag(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM, encoding="utf-8")  # the person tagged "dog" (dc:subject and TagsList)
    person = fields(sidecar)
    sidecars.merge_keywords(sidecar, ["dog", "cat"], model="m1", path_of=path_of)
    assert xmp.read_fields(sidecar)["addedSubject"] == ["cat"]  # "dog" is the person's, not claimed
    assert xmp.read_keywords(sidecar, person_only=True) == ["Beach", "Anna", "dog"]
    sidecars.remove_own(sidecar)
    assert fields(sidecar) == person and "dog" in person["subject"]


def test_replace_own_swaps_only_tagans_keywords(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM, encoding="utf-8")
    person = fields(sidecar)
    sidecars.merge_keywords(sidecar, ["sea", "cat", "lighthouse"], model="old", path_of=path_of)
    change = sidecars.merge_keywords(
        sidecar, ["sea", "boat"], model="new", path_of=path_of, mode="replace-own", root="auto/tagan"
    )
    assert change.removed == ["cat", "lighthouse"] and change.added == ["boat"]  # "sea" stays, not re-added
    assert change.properties["hierarchicalSubject"]["add"] == [
        "auto|tagan|sea",
        "auto|tagan|boat",
    ]  # new root
    got = xmp.read_fields(sidecar)
    assert sorted(got["subject"]) == sorted([*person["subject"], "sea", "boat"])
    assert sorted(got["TagsList"]) == sorted([*person["TagsList"], "auto/tagan/sea", "auto/tagan/boat"])
    assert got["addedHierarchicalSubject"] == ["auto|tagan|sea", "auto|tagan|boat"]
    assert xmp.read_model(sidecar) == "new"
    appended = sidecars.merge_keywords(
        sidecar, ["kite"], model="newer", path_of=path_of
    )  # append keeps the rest
    assert appended.removed == [] and xmp.read_fields(sidecar)["addedSubject"] == ["sea", "boat", "kite"]
    sidecars.remove_own(sidecar)
    assert fields(sidecar) == person and xmp.read_model(sidecar) is None


def test_hierarchy_seeded_for_readers_that_take_the_first_non_empty_property(tmp_path: Path) -> None:
    """digiKam and Immich read digiKam:TagsList, else lr:hierarchicalSubject, else dc:subject: a sidecar that
    had only dc:subject gets the person's keywords in the new properties too (and loses them again on untag)."""
    flat = tmp_path / "flat.jpg.xmp"
    flat.write_text(DIGIKAM_SIDECAR.replace("<digiKam:TagsList><rdf:Seq><rdf:li>Places/Beach</rdf:li></rdf:Seq>"
                                            "</digiKam:TagsList>", ""), encoding="utf-8")  # fmt: skip
    before = rdf_facts(flat.read_bytes())
    sidecars.merge_keywords(flat, ["dog"], path_of=path_of)
    got = xmp.read_fields(flat)
    assert got["TagsList"] == ["beach", "Family", "tagan/animal/domestic animal/dog"]
    assert got["hierarchicalSubject"] == ["beach", "Family", "tagan|animal|domestic animal|dog"]
    sidecars.remove_own(flat)
    assert rdf_facts(flat.read_bytes()) == before
    dt = tmp_path / "dt.jpg.xmp"  # darktable: lr:hierarchicalSubject but no TagsList: the paths are kept
    dt.write_text(DARKTABLE, encoding="utf-8")
    sidecars.merge_keywords(dt, ["dog"])
    assert "places/coast/lighthouse" in xmp.read_fields(dt)["TagsList"]


def test_untag_deletes_only_sidecars_tagan_created_that_hold_nothing_else(tmp_path: Path) -> None:
    mine = tmp_path / "a.jpg.xmp"
    sidecars.merge_keywords(mine, ["dog"], model="m1")
    assert sidecars.remove_own(mine, dry_run=True).removed == ["dog"] and mine.exists()
    assert sidecars.remove_own(mine).deleted and not mine.exists()
    rated = tmp_path / "b.jpg.xmp"  # tagan created it, then a person rated the photo in digiKam
    sidecars.merge_keywords(rated, ["dog"], model="m1")
    text = rated.read_text(encoding="utf-8").replace(
        "<rdf:Description", '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="5"'
    )
    rated.write_text(text, encoding="utf-8")
    change = sidecars.remove_own(rated)
    assert not change.deleted and rated.exists() and 'xmp:Rating="5"' in rated.read_text(encoding="utf-8")
    assert xmp.read_fields(rated)["subject"] == []
    assert not sidecars.remove_own(tmp_path / "absent.jpg.xmp").changed


def test_stale_ledger_entries_never_remove_a_persons_keyword(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    sidecars.merge_keywords(sidecar, ["sea"], model="m1")
    text = sidecar.read_text(encoding="utf-8")  # the person removes tagan's "sea" in a photo manager
    sidecar.write_text(text.replace("<rdf:li>sea</rdf:li>", "", 1), encoding="utf-8")
    assert sidecars.remove_own(sidecar, dry_run=True).removed == []  # nothing of tagan's left in dc:subject
    sidecars.merge_keywords(sidecar, ["boat"], model="m2")  # the next tagan run forgets the stale entry
    assert xmp.read_fields(sidecar)["addedSubject"] == ["boat"]
    text = sidecar.read_text(encoding="utf-8")  # then the person tags "sea" themself
    sidecar.write_text(text.replace("<rdf:li>beach</rdf:li>", "<rdf:li>beach</rdf:li><rdf:li>sea</rdf:li>"))
    assert sidecars.remove_own(sidecar).removed == ["boat"]
    assert xmp.read_keywords(sidecar) == ["beach", "sea", "Family"]


def test_file_mode_is_kept_and_writes_are_atomic(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    os.chmod(sidecar, 0o640)
    inode = sidecar.stat().st_ino
    sidecars.merge_keywords(sidecar, ["sea"])
    assert stat.S_IMODE(sidecar.stat().st_mode) == 0o640
    assert sidecar.stat().st_ino != inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg.xmp"]  # no temp files left


def test_invalid_or_hostile_sidecar_is_left_untouched(tmp_path: Path) -> None:
    broken = tmp_path / "b.jpg.xmp"
    broken.write_text("<x:xmpmeta><rdf:RDF>", encoding="utf-8")
    bomb = tmp_path / "c.jpg.xmp"
    bomb.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', encoding="utf-8")
    for path in (broken, bomb):
        before = path.read_bytes()
        with pytest.raises(xmp.XmpError, match="fix or remove it"):
            sidecars.merge_keywords(path, ["cat"])
        assert path.read_bytes() == before
        assert xmp.read_model(path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.jpg.xmp", "c.jpg.xmp"]  # no temp files left


def test_read_keywords_of_svg_with_dc_subject(tmp_path: Path) -> None:
    svg = tmp_path / "a.svg"
    svg.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#">'
        "<metadata><rdf:RDF><cc:Work><dc:subject><rdf:Bag><rdf:li>lemon</rdf:li><rdf:li> </rdf:li>"
        "<rdf:li>fruit</rdf:li><rdf:li>lemon</rdf:li></rdf:Bag></dc:subject></cc:Work></rdf:RDF></metadata></svg>",
        encoding="utf-8",
    )
    assert xmp.read_keywords(svg) == ["lemon", "fruit"]


def test_semantic_comparison_sees_changes_and_ignores_layout() -> None:
    """The test oracle itself: one changed darktable parameter is a difference, attribute vs element form is not."""
    assert rdf_facts(DARKTABLE) != rdf_facts(
        DARKTABLE.replace('darktable:modversion="6"', 'darktable:modversion="7"', 1)
    )
    relaid = DARKTABLE.replace('   xmp:Rating="3"\n', "").replace(
        "<darktable:masks_history>", "<xmp:Rating>3</xmp:Rating><darktable:masks_history>"
    )
    assert rdf_facts(relaid) == rdf_facts(DARKTABLE)


def test_exiftool_reads_every_keyword_property_and_the_ledger(tmp_path: Path) -> None:
    fresh = tmp_path / "new.jpg.xmp"
    sidecars.merge_keywords(fresh, ["cat", "ciel bleu", "café", "R&B <live>"], model="m1", path_of=path_of)
    seen = exiftool(fresh)
    assert as_list(seen["Subject"]) == ["cat", "ciel bleu", "café", "R&B <live>"]
    assert as_list(seen["HierarchicalSubject"]) == [
        "tagan|animal|cat",
        "tagan|ciel bleu",
        "tagan|café",
        "tagan|R&B <live>",
    ]
    assert as_list(seen["TagsList"]) == [
        "tagan/animal/cat",
        "tagan/ciel bleu",
        "tagan/café",
        "tagan/R&B <live>",
    ]
    assert as_list(seen["AddedSubject"]) == as_list(seen["Subject"]) and seen["Tagger"] == "m1"
    old = tmp_path / "old.jpg.xmp"
    old.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    sidecars.merge_keywords(old, ["sea"], model="m1")
    seen = exiftool(old)
    assert as_list(seen["Subject"]) == ["beach", "Family", "sea"]
    assert seen["Rating"] == 4 and seen["Title"] == "Holiday in Brittany"
    assert as_list(seen["TagsList"]) == ["Places/Beach", "tagan/sea"]


@pytest.mark.parametrize("name", sorted(SIDECARS))
def test_exiftool_sees_every_other_field_unchanged(tmp_path: Path, name: str) -> None:
    sidecar = tmp_path / f"a.{name}.xmp"
    sidecar.write_text(SIDECARS[name], encoding="utf-8")
    before = exiftool(sidecar)
    sidecars.merge_keywords(sidecar, ["dog", "sea"], model="m1", tags=[("dog", 0.5)], path_of=path_of)
    after = exiftool(sidecar)
    ignore = {"SourceFile", "FileModifyDate", "FileAccessDate", "FileInodeChangeDate", "FileSize"}
    kept = lambda d: {k: v for k, v in d.items() if k not in ignore | EXIFTOOL_KEYWORDS | EXIFTOOL_TAGAN}  # noqa: E731
    assert kept(after) == kept(before) and len(kept(before)) > 10
    for key in EXIFTOOL_KEYWORDS:
        assert set(as_list(before.get(key))) <= set(as_list(after.get(key)))
        assert any(v.endswith("sea") for v in as_list(after[key]))
    sidecars.remove_own(sidecar)
    restored = exiftool(sidecar)
    assert {k: v for k, v in restored.items() if k not in ignore} == {
        k: v for k, v in before.items() if k not in ignore
    }


def test_reading_follows_a_symlinked_sidecar_but_editing_never_does(tmp_path: Path) -> None:
    shared = tmp_path / "shared.xmp"
    shared.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    link = tmp_path / "a.jpg.xmp"
    link.symlink_to(shared)
    assert xmp.read_keywords(link) == ["beach", "Family"]
    with pytest.raises(xmp.XmpError, match="symbolic link"):
        sidecars.merge_keywords(link, ["sea"])
    assert link.is_symlink() and shared.read_text(encoding="utf-8") == DIGIKAM_SIDECAR
