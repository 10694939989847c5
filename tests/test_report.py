"""The --report contact sheet: self-contained, well-formed, escaped, and it renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from tagan.photos.report import ContactSheet, thumbnail_base64
from tests.helpers import system_tool

COLORS = [(220, 30, 30), (30, 160, 60), (40, 70, 200)]
HOSTILE_NAME = '<img src=x onerror="alert(1)"> &amp; é.jpg'


class Collector(HTMLParser):
    """Every start tag with its attributes, and whether the nesting closed properly."""

    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def make_sheet(tmp_path: Path) -> Path:
    """A contact sheet of three photos (solid colours), one skipped, one with a hostile name."""
    names = ["beach.jpg", HOSTILE_NAME, "broken.jpg"]
    for name, color in zip(names, COLORS):
        Image.new("RGB", (320, 240), color).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "tags.html"
    with open(out, "w", encoding="utf-8") as f:
        sheet = ContactSheet(
            f, title="tagan contact sheet", meta={"model": "m1", "root": "tagan"}, preview=True
        )
        sheet.begin()
        sheet.add(tmp_path / names[0], "ok", [("sea", 0.62), ("beach", 0.31)], sidecar=tmp_path / "beach.jpg.xmp",
                  changes={"subject": {"add": ["sea"], "remove": []},
                           "TagsList": {"add": ["tagan/sea"], "remove": ["tagan/old"]}},
                  thumb=thumbnail_base64(tmp_path / names[0]))  # fmt: skip
        sheet.add(
            tmp_path / names[1], "ok", [("<b>dog</b>", 0.5)], thumb=thumbnail_base64(tmp_path / names[1])
        )
        sheet.add(
            tmp_path / names[2], "skipped: not an image", [], thumb=thumbnail_base64(tmp_path / names[2])
        )
        sheet.end("3 photos: 2 tagged, 0 already tagged, 1 skipped")
    return out


def test_contact_sheet_is_self_contained_well_formed_and_escaped(tmp_path: Path) -> None:
    html = make_sheet(tmp_path).read_text(encoding="utf-8")
    parser = Collector()
    parser.feed(html)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    tags = parser.tags
    assert [t for t, _ in tags].count("section") == 3
    assert not [
        t for t, _ in tags if t in ("script", "link", "iframe", "object")
    ]  # nothing runs, nothing loads
    images = [a for t, a in tags if t == "img"]
    assert len(images) == 2  # the broken photo shows "no preview"
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.size == (256, 192)
    assert all(not (a.get("src") or a.get("href") or "").startswith(("http", "//", "file:")) for _, a in tags)
    text = "".join(parser.text)
    assert HOSTILE_NAME in text and "<b>dog</b>" in text  # shown as text, never as markup
    for shown in (
        "+sea",
        "+tagan/sea",
        "tagan/old",
        "dc:subject",
        "digiKam:TagsList",
        "would change",
        "0.62",
    ):
        assert shown in text
    assert "skipped: not an image" in text and "no preview" in text


def test_contact_sheet_renders_in_headless_chromium(tmp_path: Path) -> None:
    report = make_sheet(tmp_path)
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
             "--window-size=1200,800"]  # fmt: skip
    proc = subprocess.run(
        [system_tool("chromium", "chromium-browser"), *flags, report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)  # (H, W, 3)
    assert pixels.shape[:2] == (800, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    for color in COLORS[:2]:  # each decodable thumbnail is on screen in its colour
        near = (np.abs(pixels - np.array(color)).sum(axis=2) < 30).sum()
        assert near > 5000, (color, near)
