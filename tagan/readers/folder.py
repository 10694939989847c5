"""A user's photo folder: tags from tags.csv, XMP sidecars, embedded XMP packets or IPTC keywords."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from PIL import Image, IptcImagePlugin

from tagan.errors import UserError
from tagan.readers.images import TaggedImage, list_images
from tagan.readers.xmp import XmpError, read_keywords, sidecar_path

log = logging.getLogger(__name__)

_DC_SUBJECT = "{http://purl.org/dc/elements/1.1/}subject"
_RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
_PACKET = re.compile(rb"<x:xmpmeta.*?</x:xmpmeta>", re.S)
_CSV_SPLIT = re.compile(r"[;,|]")


def read_tags_csv(path: Path) -> dict[str, list[str]]:
    """tags.csv with columns path,tags (path relative to the folder; tags separated by ; , or |)."""
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "tags"} <= set(reader.fieldnames):
            raise UserError(
                f"{path}: needs a header row with columns 'path' and 'tags', got {reader.fieldnames}"
            )
        for row in reader:
            key = Path((row["path"] or "").strip()).as_posix()
            out[key] = [t.strip() for t in _CSV_SPLIT.split(row["tags"] or "") if t.strip()]
    return out


def packet_keywords(packet: bytes) -> list[str]:
    """dc:subject keywords of an XMP packet (bytes); [] when it has none or does not parse."""
    match = _PACKET.search(packet)
    if not match:
        return []
    try:
        root = SafeET.fromstring(match.group(0))
    except (ParseError, DefusedXmlException):
        return []
    return [
        (li.text or "").strip()
        for s in root.iter(_DC_SUBJECT)
        for li in s.iter(_RDF_LI)
        if (li.text or "").strip()
    ]


def embedded_keywords(path: Path) -> list[str]:
    """Keywords embedded in the image file: its XMP packet (dc:subject), else IPTC 2:25 keywords."""
    try:
        with Image.open(path) as im:
            info = im.info
            xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or getattr(im, "tag_v2", {}).get(700)
            if isinstance(xmp, str):
                xmp = xmp.encode("utf-8")
            words = packet_keywords(xmp) if isinstance(xmp, bytes) else []
            if words:
                return words
            iptc = IptcImagePlugin.getiptcinfo(im) or {}
    except Exception as e:  # unreadable files are reported by the feature stage, not here
        log.debug("%s: no embedded keywords (%s)", path, e)
        return []
    raw = iptc.get((2, 25), [])
    raw = raw if isinstance(raw, list) else [raw]
    return [k.decode("utf-8", "replace").strip() for k in raw if k.strip()]


def photo_keywords(photo: Path) -> list[str]:
    """Keywords of one photo: XMP sidecar (NAME.EXT.xmp, then NAME.xmp), else embedded XMP / IPTC."""
    for style in ("ext", "stem"):
        sidecar = sidecar_path(photo, style)
        if sidecar.is_file():
            try:
                return read_keywords(sidecar, person_only=True)  # never train on tagan's own tags
            except XmpError as e:
                log.warning("%s", e)
    return embedded_keywords(photo)


def read_folder(root: Path) -> Iterator[TaggedImage]:
    """Every image under `root` with its tags (tags.csv entries first, else sidecar/embedded); group = subfolder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"photo folder {root} not found; set tags_data.folder to your photo library")
    csv_path = root / "tags.csv"
    csv_tags = read_tags_csv(csv_path) if csv_path.is_file() else {}
    for path in list_images(root):
        rel = path.relative_to(root).as_posix()
        tags = csv_tags.get(rel) or photo_keywords(path)
        yield TaggedImage(id=rel, path=path, group=path.parent.relative_to(root).as_posix() or ".", tags=tags)
