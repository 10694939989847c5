"""XMP sidecars: keywords read back, merged without loss or duplicates, atomic, checked by exiftool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tagan.readers import xmp

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

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


def exiftool(path: Path) -> dict:
    """What an independent XMP reader sees in a sidecar."""
    out = subprocess.run(
        ["exiftool", "-j", "-XMP:all", str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


def as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_sidecar_names_follow_digikam_and_lightroom_conventions(tmp_path: Path) -> None:
    photo = tmp_path / "IMG 01.jpeg"
    assert xmp.sidecar_path(photo) == tmp_path / "IMG 01.jpeg.xmp"
    assert xmp.sidecar_path(photo, "stem") == tmp_path / "IMG 01.xmp"


def test_creates_minimal_valid_sidecar(tmp_path: Path) -> None:
    sidecar = tmp_path / "chat é.jpg.xmp"
    change = xmp.merge_keywords(
        sidecar, ["cat", "sofa", "cat"], model="m1", tags=[("cat", 0.5), ("sofa", 0.2)]
    )
    assert change.created and change.added == ["cat", "sofa"]
    assert xmp.read_keywords(sidecar) == ["cat", "sofa"]
    assert xmp.read_model(sidecar) == "m1"
    assert xmp.read_tags(sidecar) == [("cat", 0.5), ("sofa", 0.2)]
    text = sidecar.read_text(encoding="utf-8")
    for element in ("x:xmpmeta", "rdf:RDF", "rdf:Description", "dc:subject", "rdf:Bag", "rdf:li"):
        assert f"<{element}" in text


def test_merge_preserves_other_metadata_and_never_duplicates(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    change = xmp.merge_keywords(sidecar, ["sea", "family", "beach"], model="m1")
    assert change.added == ["sea"] and change.kept == ["beach", "Family"]  # case-insensitive match
    again = xmp.merge_keywords(sidecar, ["sea", "family", "beach"], model="m1")
    assert not again.changed and again.added == []
    assert xmp.read_keywords(sidecar) == ["beach", "Family", "sea"]
    text = sidecar.read_text(encoding="utf-8")
    for kept in ('xmp:Rating="4"', "Holiday in Brittany", "Places/Beach", "<!-- padding kept", "xpacket end"):
        assert kept in text
    assert "ns0:" not in text  # original namespace prefixes kept


def test_dry_run_reports_but_writes_nothing(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    change = xmp.merge_keywords(sidecar, ["sea"], model="m1", dry_run=True)
    assert change.added == ["sea"]
    assert sidecar.read_text(encoding="utf-8") == DIGIKAM_SIDECAR
    assert not xmp.merge_keywords(tmp_path / "new.jpg.xmp", ["x"], dry_run=True).sidecar.exists()


def test_invalid_or_hostile_sidecar_is_left_untouched(tmp_path: Path) -> None:
    broken = tmp_path / "b.jpg.xmp"
    broken.write_text("<x:xmpmeta><rdf:RDF>", encoding="utf-8")
    bomb = tmp_path / "c.jpg.xmp"
    bomb.write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', encoding="utf-8")
    for path in (broken, bomb):
        before = path.read_bytes()
        with pytest.raises(xmp.XmpError, match="fix or remove it"):
            xmp.merge_keywords(path, ["cat"])
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


@needs_exiftool
def test_exiftool_reads_merged_keywords_and_kept_metadata(tmp_path: Path) -> None:
    fresh = tmp_path / "new.jpg.xmp"
    xmp.merge_keywords(fresh, ["cat", "ciel bleu", "café"], model="m1")
    assert as_list(exiftool(fresh)["Subject"]) == ["cat", "ciel bleu", "café"]
    old = tmp_path / "old.jpg.xmp"
    old.write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    xmp.merge_keywords(old, ["sea"], model="m1")
    seen = exiftool(old)
    assert as_list(seen["Subject"]) == ["beach", "Family", "sea"]
    assert (
        seen["Rating"] == 4 and seen["Title"] == "Holiday in Brittany" and seen["TagsList"] == "Places/Beach"
    )
