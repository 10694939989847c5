"""XMP sidecars, read: keywords where photo managers look, which of them tagan added, and the packet as a tree.

tagan writes each tag three ways, as digiKam, Lightroom, darktable and Immich read them:
`dc:subject` (the word), `lr:hierarchicalSubject` (rdf:Bag, `ROOT|hypernym|...|word`) and `digiKam:TagsList`
(rdf:Seq, `ROOT/hypernym/.../word`). Every value it adds is also recorded in a ledger in its own namespace
(`tagan:addedSubject`, `tagan:addedHierarchicalSubject`, `tagan:addedTagsList`). This module reads them (the
`tags_data` stage reads keywords through tagan.readers.folder); tagan.photos.sidecars writes, merges and undoes.

Packets are parsed with defusedxml + ElementTree, which refuse entity tricks and DTD-declared entities. Anything
unusual (not UTF-8, malformed, a keyword property that is not a plain Bag/Seq of text, a symlink where one is
not followed, not a regular file, huge) raises XmpError.
"""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tagan.errors import NotRegularFileError
from tagan.files import open_regular

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "tagan": "https://github.com/tagan/xmp/1.0/",
}
XmpStyle = Literal["ext", "stem"]
MAX_SIDECAR_BYTES = 32 << 20  # darktable histories and embedded thumbnails stay far below this
MAX_DEPTH = 64  # real XMP nests under 15 levels; deeper trees would exhaust the serializer's recursion


def ns_name(prefix: str, name: str) -> str:
    """'{uri}name' of a prefixed XMP name, as ElementTree spells it."""
    return f"{{{NS[prefix]}}}{name}"


@dataclass(frozen=True)
class KeywordProperty:
    """One keyword property tagan writes, its array type, its hierarchy separator and its ledger property."""

    name: str
    qname: str
    container: str  # rdf:Bag or rdf:Seq (the type tagan creates; either is accepted when reading)
    separator: str | None  # None: flat keywords (dc:subject holds the word only)
    ledger: str  # tagan property listing the values tagan added to this one


PROPERTIES = (
    KeywordProperty(
        "subject", ns_name("dc", "subject"), ns_name("rdf", "Bag"), None, ns_name("tagan", "addedSubject")
    ),
    KeywordProperty(
        "hierarchicalSubject",
        ns_name("lr", "hierarchicalSubject"),
        ns_name("rdf", "Bag"),
        "|",
        ns_name("tagan", "addedHierarchicalSubject"),
    ),
    KeywordProperty(
        "TagsList",
        ns_name("digiKam", "TagsList"),
        ns_name("rdf", "Seq"),
        "/",
        ns_name("tagan", "addedTagsList"),
    ),
)
MODEL_ATTR = ns_name("tagan", "tagger")  # rdf:Description attribute naming the model that tagged the photo
TAGS_ATTR = ns_name(
    "tagan", "tags"
)  # JSON [[tag, score], ...] of that model's tags (reported on cached re-runs)
CREATED_ATTR = ns_name("tagan", "created")  # "True": tagan created this sidecar (deleted by untag once empty)
MADE_ATTR = ns_name("tagan", "made")  # JSON {photo name: what its tags were made from} (tagan.photos.ledger)
_ARRAYS = (ns_name("rdf", "Bag"), ns_name("rdf", "Seq"))
_XML_DECL = re.compile(r"<\?xml\s.*?\?>", re.S)
_DECL_ENCODING = re.compile(r"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class XmpError(ValueError):
    """A sidecar exists but is not XMP we can safely read or rewrite (left untouched)."""


def sidecar_path(photo: Path, style: XmpStyle = "ext") -> Path:
    """`NAME.EXT.xmp` (digiKam, darktable; style 'ext') or `NAME.xmp` (Lightroom, style 'stem')."""
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp") if style == "ext" else photo.with_suffix(".xmp")


# --------------------------------------------------------------------------------------------- reading
def read_sidecar_bytes(path: Path, *, follow: bool = False) -> bytes | None:
    """The sidecar's bytes, None when there is none; only regular files, never blocks on a FIFO or device.

    follow: read through a symlink (reading only; an edit never goes through a link).
    """
    try:
        f = open_regular(path, follow=follow)
    except FileNotFoundError:
        return None
    except NotRegularFileError as e:
        if e.kind == "a symbolic link":
            raise XmpError(
                f"{path}: is a symbolic link; tagan edits only regular files (resolve it by hand)"
            ) from None
        raise XmpError(f"{path}: {e}; remove or rename it") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_SIDECAR_BYTES:
            raise XmpError(f"{path}: {size} bytes, larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar")
        data = f.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise XmpError(f"{path}: larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar")
    return data


def decode_packet(data: bytes, path: Path) -> str:
    """UTF-8 text (a BOM allowed); another declared encoding only when the file is plain ASCII."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise XmpError(f"{path}: not UTF-8 XMP ({e}); fix or remove it") from None
    declared = _DECL_ENCODING.match(text)
    if (
        declared
        and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8")
        and not text.isascii()
    ):
        raise XmpError(f"{path}: declares encoding {declared.group(1)}, XMP must be UTF-8; fix or remove it")
    return text


def parse_packet(text: str, path: Path) -> tuple[ET.Element, dict[str, str]]:
    """Parse XML text safely; returns the root and the prefix -> URI map declared in it."""
    prefixes: dict[str, str] = {}
    depth = deepest = 0
    try:  # XMP allows no DTD: any DOCTYPE (entity bombs, external entities or DTDs) is refused
        events = SafeET.iterparse(io.StringIO(text), events=("start-ns", "start", "end"), forbid_dtd=True)
        for event, item in events:
            if event == "start-ns":
                prefixes.setdefault(*item)
            elif event == "start":
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_DEPTH:
                    raise XmpError(
                        f"{path}: XML nested deeper than {MAX_DEPTH} levels; not XMP (left untouched)"
                    )
            else:
                depth -= 1
        root = events.root
    except (ET.ParseError, DefusedXmlException) as e:
        raise XmpError(f"{path}: not valid XMP ({e.__class__.__name__}: {e}); fix or remove it") from None
    return root, prefixes


def load_packet(path: Path, *, follow: bool = False) -> tuple[ET.Element, dict[str, str], str] | None:
    data = read_sidecar_bytes(path, follow=follow)
    if data is None:
        return None
    text = decode_packet(data, path)
    root, prefixes = parse_packet(text, path)
    return root, prefixes, text


def _subject_items(root: ET.Element) -> list[str]:
    """Text of every rdf:li under any dc:subject in document order (whitespace-trimmed, empties dropped)."""
    words = []
    for subject in root.iter(ns_name("dc", "subject")):
        for li in subject.iter(ns_name("rdf", "li")):
            text = (li.text or "").strip()
            if text:
                words.append(text)
    return words


def read_keywords(path: Path, *, person_only: bool = False) -> list[str]:
    """Keywords of the dc:subject bag of an XMP sidecar (or any XML with one, e.g. an SVG), duplicates dropped.

    person_only: leave out the keywords tagan recorded as its own (e.g. to train only on people's keywords).
    """
    path = Path(path)
    loaded = load_packet(path, follow=True)
    if loaded is None:
        raise FileNotFoundError(path)
    root = loaded[0]
    words = _subject_items(root)
    if person_only:
        own = [
            (li.text or "").strip()
            for e in root.iter(PROPERTIES[0].ledger)
            for li in e.iter(ns_name("rdf", "li"))
        ]
        for word in own:
            if word in words:
                del words[len(words) - 1 - words[::-1].index(word)]
    return list(dict.fromkeys(words))


def read_attribute(path: Path, name: str) -> str | None:
    """An attribute of the sidecar's first rdf:Description holding it; None when absent or unreadable."""
    try:
        loaded = load_packet(Path(path), follow=True)
    except (OSError, XmpError):
        return None
    if loaded is None:
        return None
    for desc in loaded[0].iter(ns_name("rdf", "Description")):
        if name in desc.attrib:
            return desc.attrib[name]
    return None


def read_model(path: Path) -> str | None:
    """The model id recorded by tagan in a sidecar, or None (no sidecar, unreadable, or not tagged by tagan)."""
    return read_attribute(path, MODEL_ATTR)


def read_tags(path: Path) -> list[tuple[str, float]]:
    """The (tag, score) list tagan recorded in a sidecar with its model id; [] when there is none."""
    raw = read_attribute(path, TAGS_ATTR)
    try:
        return [(str(t), float(s)) for t, s in json.loads(raw)] if raw else []
    except (ValueError, TypeError):
        return []


def read_fields(path: Path) -> dict[str, list[str]]:
    """Values of each keyword property and of its tagan ledger ('added<Name>'), in document order."""
    loaded = load_packet(Path(path), follow=True)
    if loaded is None:
        raise FileNotFoundError(path)
    doc = XmpDoc(Path(path), loaded[0])
    out = {}
    for prop in PROPERTIES:
        out[prop.name] = doc.values(prop.qname)
        out["added" + prop.name[0].upper() + prop.name[1:]] = doc.values(prop.ledger)
    return out


# --------------------------------------------------------------------------------------------- the document
class XmpDoc:
    """The top-level rdf:Descriptions of a packet and the array properties tagan edits in them."""

    def __init__(self, path: Path, root: ET.Element) -> None:
        self.path, self.root = path, root
        rdf = root if root.tag == ns_name("rdf", "RDF") else next(root.iter(ns_name("rdf", "RDF")), None)
        if rdf is None:
            raise XmpError(f"{path}: no rdf:RDF element; not an XMP packet (left untouched)")
        others = [c.tag for c in rdf if c.tag != ns_name("rdf", "Description")]
        if others:
            raise XmpError(f"{path}: rdf:RDF holds {others[0]}, not only rdf:Description; left untouched")
        self.rdf = rdf
        self.descriptions = list(rdf)

    def find(self, qname: str) -> tuple[ET.Element, ET.Element | None] | None:
        """(description, container) of an array property; None when absent; XmpError when it is not a plain array."""
        found = []
        for desc in self.descriptions:
            if qname in desc.attrib:
                raise XmpError(
                    f"{self.path}: {pretty_name(qname)} is a single value, not a list; left untouched"
                )
            found += [(desc, e) for e in desc if e.tag == qname]
        if not found:
            return None
        if len(found) > 1:
            raise XmpError(f"{self.path}: {pretty_name(qname)} appears {len(found)} times; left untouched")
        desc, prop = found[0]
        children = list(prop)
        if prop.attrib or (prop.text or "").strip() or len(children) > 1:
            raise XmpError(
                f"{self.path}: {pretty_name(qname)} is not a plain rdf:Bag/rdf:Seq; left untouched"
            )
        if not children:
            return desc, None
        container = children[0]
        if container.tag not in _ARRAYS:
            raise XmpError(
                f"{self.path}: {pretty_name(qname)} is an {pretty_name(container.tag)}, not an rdf:Bag/rdf:Seq; "
                "left untouched"
            )
        for li in container:
            if li.tag != ns_name("rdf", "li") or len(li):
                raise XmpError(f"{self.path}: {pretty_name(qname)} holds non-text items; left untouched")
        return desc, container

    def values(self, qname: str) -> list[str]:
        found = self.find(qname)
        if found is None or found[1] is None:
            return []
        return [li.text or "" for li in found[1]]


def pretty_name(qname: str) -> str:
    """'prefix:name' of a '{uri}name' (for messages)."""
    uri, _, name = qname[1:].partition("}")
    prefix = next((p for p, u in NS.items() if u == uri), uri)
    return f"{prefix}:{name}"
