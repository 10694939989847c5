"""XMP sidecars: read dc:subject keywords, merge new ones in atomically, remember which model tagged a photo."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tagan.utils import atomic_path

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "tagan": "https://github.com/tagan/xmp/1.0/",
}
XmpStyle = Literal["ext", "stem"]
MODEL_ATTR = f"{{{NS['tagan']}}}tagger"  # rdf:Description attribute naming the model that tagged the photo
TAGS_ATTR = (
    f"{{{NS['tagan']}}}tags"  # JSON [[tag, score], ...] of that model's tags (reported on cached re-runs)
)
_PROLOG = re.compile(r"\A(?:\s*(?:<\?.*?\?>|<!--.*?-->))*\s*", re.S)
_EPILOG = re.compile(r"(?:\s*(?:<\?.*?\?>|<!--.*?-->))*\s*\Z", re.S)
_XML_DECL = re.compile(r"<\?xml\s.*?\?>", re.S)


class XmpError(ValueError):
    """A sidecar exists but is not XMP we can safely read or rewrite (left untouched)."""


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def sidecar_path(photo: Path, style: XmpStyle = "ext") -> Path:
    """`NAME.EXT.xmp` (digiKam, darktable; style 'ext') or `NAME.xmp` (Lightroom, style 'stem')."""
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp") if style == "ext" else photo.with_suffix(".xmp")


def _parse(text: str, path: Path) -> tuple[ET.Element, dict[str, str]]:
    """Parse XML text safely; returns the root and the prefix -> URI map declared in it."""
    prefixes: dict[str, str] = {}
    try:
        for _event, (prefix, uri) in SafeET.iterparse(io.StringIO(text), events=("start-ns",)):
            prefixes.setdefault(prefix, uri)
        root = SafeET.fromstring(text)
    except (ET.ParseError, DefusedXmlException) as e:
        raise XmpError(f"{path}: not valid XMP ({e.__class__.__name__}: {e}); fix or remove it") from None
    return root, prefixes


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise XmpError(f"{path}: not UTF-8 XMP ({e}); fix or remove it") from None


def _subject_items(root: ET.Element) -> list[str]:
    """Text of every rdf:li under any dc:subject in document order (whitespace-trimmed, empties dropped)."""
    words = []
    for subject in root.iter(_q("dc", "subject")):
        for li in subject.iter(_q("rdf", "li")):
            text = (li.text or "").strip()
            if text:
                words.append(text)
    return words


def read_keywords(path: Path) -> list[str]:
    """Keywords of the dc:subject bag of an XMP sidecar (or any XML with one, e.g. an SVG), duplicates dropped."""
    root, _ = _parse(_read_text(Path(path)), Path(path))
    return list(dict.fromkeys(_subject_items(root)))


def read_model(path: Path) -> str | None:
    """The model id recorded by tagan in a sidecar, or None (no sidecar, unreadable, or not tagged by tagan)."""
    path = Path(path)
    try:
        root, _ = _parse(_read_text(path), path)
    except (OSError, XmpError):
        return None
    for desc in root.iter(_q("rdf", "Description")):
        if MODEL_ATTR in desc.attrib:
            return desc.attrib[MODEL_ATTR]
    return None


def read_tags(path: Path) -> list[tuple[str, float]]:
    """The (tag, score) list tagan recorded in a sidecar with its model id; [] when there is none."""
    path = Path(path)
    try:
        root, _ = _parse(_read_text(path), path)
    except (OSError, XmpError):
        return []
    for desc in root.iter(_q("rdf", "Description")):
        if TAGS_ATTR in desc.attrib:
            try:
                return [(str(t), float(s)) for t, s in json.loads(desc.attrib[TAGS_ATTR])]
            except (ValueError, TypeError):
                return []
    return []


def _minimal_root() -> ET.Element:
    xmpmeta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(xmpmeta, _q("rdf", "RDF"))
    ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return xmpmeta


def _description(root: ET.Element) -> ET.Element:
    """The rdf:Description holding dc:subject, else the first one, else a new one in rdf:RDF."""
    descriptions = list(root.iter(_q("rdf", "Description")))
    for desc in descriptions:
        if desc.find(_q("dc", "subject")) is not None:
            return desc
    if descriptions:
        return descriptions[0]
    rdf = root if root.tag == _q("rdf", "RDF") else next(root.iter(_q("rdf", "RDF")), None)
    if rdf is None:
        raise XmpError("no rdf:RDF element; not an XMP packet")
    return ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})


def _bag(desc: ET.Element) -> ET.Element:
    """The rdf:Bag of dc:subject in `desc`, created when missing."""
    subject = desc.find(_q("dc", "subject"))
    if subject is None:
        subject = ET.SubElement(desc, _q("dc", "subject"))
    container = next((c for c in subject if c.tag in (_q("rdf", "Bag"), _q("rdf", "Seq"))), None)
    if container is None:
        container = ET.SubElement(subject, _q("rdf", "Bag"))
    return container


@dataclass
class XmpChange:
    """What merging keywords into one sidecar did (or, on a dry run, would do)."""

    sidecar: Path
    created: bool  # no sidecar existed before
    added: list[str] = field(default_factory=list)  # keywords new to the sidecar
    kept: list[str] = field(default_factory=list)  # keywords already there (never removed)

    @property
    def changed(self) -> bool:
        return self.created or bool(self.added)


def merge_keywords(
    sidecar: Path,
    keywords: list[str],
    *,
    model: str | None = None,
    tags: list[tuple[str, float]] | None = None,
    dry_run: bool = False,
) -> XmpChange:
    """Add `keywords` to the sidecar's dc:subject bag, keeping all other content; atomic; creates a minimal XMP.

    `model` (and the scored `tags`) are recorded as tagan:tagger / tagan:tags attributes so re-runs can skip.
    """
    sidecar = Path(sidecar)
    created = not sidecar.exists()
    prolog = epilog = ""
    if created:
        root, prefixes = _minimal_root(), {}
    else:
        text = _read_text(sidecar)
        root, prefixes = _parse(text, sidecar)
        prolog = _PROLOG.match(text).group(0)
        epilog = _EPILOG.search(text[len(prolog) :]).group(0)
        prolog = _XML_DECL.sub('<?xml version="1.0" encoding="UTF-8"?>', prolog, count=1)
    kept = _subject_items(root)
    have = {k.casefold() for k in kept}
    added = []
    for word in keywords:
        word = word.strip()
        if word and word.casefold() not in have:
            have.add(word.casefold())
            added.append(word)
    change = XmpChange(sidecar=sidecar, created=created, added=added, kept=kept)
    desc = _description(root)
    marks = {}
    if model is not None:
        marks[MODEL_ATTR] = model
        marks[TAGS_ATTR] = json.dumps([[t, round(float(s), 4)] for t, s in (tags or [])], ensure_ascii=False)
    marks_changed = any(desc.get(k) != v for k, v in marks.items())
    if dry_run or not (change.changed or marks_changed):
        return change
    desc.attrib.update(marks)
    bag = _bag(desc)
    old = list(bag)
    inner = bag.text if bag.text and not bag.text.strip() else None
    closing = old[-1].tail if old else None
    new = []
    for word in added:
        li = ET.SubElement(bag, _q("rdf", "li"))
        li.text = word
        new.append(li)
    if new and inner is not None and closing is not None:  # keep the file's layout
        for li in [*old[-1:], *new]:
            li.tail = inner
        new[-1].tail = closing
    if created:
        ET.indent(root, space=" ")
    for prefix, uri in {**NS, **prefixes}.items():
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            ET.register_namespace(prefix, uri)
    body = ET.tostring(root, encoding="unicode")
    if created:
        body = f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>\n'
    with atomic_path(sidecar) as tmp:
        tmp.write_text(prolog + body + epilog, encoding="utf-8")
    return change
