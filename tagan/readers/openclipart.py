"""Open Clip Art (Debian openclipart-svg + openclipart-png): dc:subject keywords from each SVG, its PNG twin."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tagan.errors import UserError
from tagan.readers.images import TaggedImage

log = logging.getLogger(__name__)

SVG_ROOT = Path("/usr/share/openclipart/svg")
PNG_ROOT = Path("/usr/share/openclipart/png")
_DC_SUBJECT = "{http://purl.org/dc/elements/1.1/}subject"
_RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
INSTALL_HINT = "install it with `apt-get install -y openclipart-svg openclipart-png` (as root)"


def svg_keywords(svg: Path) -> list[str]:
    """Raw keywords (rdf:li texts under dc:subject) of one SVG, in document order; raises ValueError if unparsable."""
    try:
        root = SafeET.parse(svg).getroot()
    except (ParseError, DefusedXmlException, UnicodeDecodeError) as e:
        raise ValueError(f"{svg}: unparsable SVG ({e.__class__.__name__}: {e})") from None
    return [li.text or "" for subject in root.iter(_DC_SUBJECT) for li in subject.iter(_RDF_LI)]


def read_openclipart(svg_root: Path = SVG_ROOT, png_root: Path = PNG_ROOT) -> Iterator[TaggedImage]:
    """Every SVG under `svg_root` with a PNG twin: id = relative path sans suffix, group = leaf folder.

    The package files some drawings in several folders; byte-identical PNGs are yielded once (the first in
    sorted path order) so that a copy cannot sit on both sides of a split.
    """
    svg_root, png_root = Path(svg_root), Path(png_root)
    for root, what in ((svg_root, "openclipart-svg"), (png_root, "openclipart-png")):
        if not root.is_dir():
            raise UserError(
                f"Open Clip Art {what} not found at {root}; {INSTALL_HINT}, or set the path in params.yaml"
            )
    bad = missing = dupes = 0
    seen: set[bytes] = set()
    for svg in sorted(svg_root.rglob("*.svg")):
        rel = svg.relative_to(svg_root).with_suffix("")
        png = png_root / rel.with_suffix(".png")
        if not png.is_file():
            missing += 1
            continue
        digest = hashlib.md5(png.read_bytes(), usedforsecurity=False).digest()
        if digest in seen:
            dupes += 1
            continue
        seen.add(digest)
        try:
            tags = svg_keywords(svg)
        except ValueError as e:
            bad += 1
            log.debug("%s", e)
            continue
        group = rel.parent.as_posix() or "."
        yield TaggedImage(id=rel.as_posix(), path=png, group=group, tags=tags)
    log.info(
        "openclipart: skipped %d unparsable SVGs, %d without a PNG twin, %d duplicate copies",
        bad,
        missing,
        dupes,
    )
