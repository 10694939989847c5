"""Would exiv2 (python-exiv2, the library digiKam and darktable use) keep sidecars safe? Evidence for issue 15.

Runs the same sidecars through exiv2 (read packet -> add a keyword -> serialize) and through tagan's own
editor, and compares the RDF facts before and after (tests/xmp_fixtures.rdf_facts). Needs
`pip install exiv2==0.19.2` (not a tagan dependency). Usage: python scripts/xmp_library_check.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagan.photos import sidecars  # noqa: E402
from tagan.readers import xmp  # noqa: E402
from tests.xmp_fixtures import SIDECARS, rdf_facts, without  # noqa: E402

HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
)
TAIL = "</rdf:Description></rdf:RDF></x:xmpmeta>"
CASES = {
    **{f"{k} sidecar": v.encode() for k, v in SIDECARS.items()},
    "truncated (malformed) sidecar": SIDECARS["digikam"][:900].encode(),
    "ISO-8859-1 declared, 'café'": (
        '<?xml version="1.0" encoding="ISO-8859-1"?>' + HEAD + "<dc:subject><rdf:Bag><rdf:li>caf\xe9</rdf:li>"
        "</rdf:Bag></dc:subject>" + TAIL
    ).encode("latin-1"),
    "non-RDF element inside x:xmpmeta": (
        HEAD.replace("<rdf:RDF", '<other xmlns="urn:x">data</other><rdf:RDF')
        + "<dc:rights>mine</dc:rights>"
        + TAIL
    ).encode(),
    "prefix lr bound to another URI": (
        HEAD.replace('xmlns:dc="', 'xmlns:lr="urn:not-lightroom" lr:mine="kept" xmlns:dc="') + TAIL
    ).encode(),
    "digiKam sidecar read after that one": SIDECARS["digikam"].encode(),
}


def with_exiv2(data: bytes) -> tuple[str, list[str]]:
    """exiv2: open the packet from memory, add one dc:subject keyword, serialize; (packet, log lines)."""
    import exiv2

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    logging.getLogger("exiv2").addHandler(handler)
    try:
        image = exiv2.ImageFactory.open(data)
        image.readMetadata()
        xmp_data = image.xmpData()
        xmp_data["Xmp.dc.subject"] = "tagan-added"
        rc, packet = exiv2.XmpParser.encode(xmp_data, exiv2.XmpParser.XmpFormatFlags.useCompactFormat)
        return (packet if rc == 0 else f"encode failed {rc}"), records
    except exiv2.Exiv2Error as e:
        return f"refused: {e}", records
    finally:
        logging.getLogger("exiv2").removeHandler(handler)


def with_tagan(data: bytes) -> str:
    """tagan: the same edit on a temp copy."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.xmp"
        path.write_bytes(data)
        try:
            sidecars.merge_keywords(path, ["tagan-added"])
        except xmp.XmpError as e:
            return f"refused: {e}"
        return path.read_text(encoding="utf-8")


def verdict(before: bytes, after: str) -> str:
    """'kept' when every fact other than the keyword properties survived, else what was lost or gained."""
    if after.startswith(("refused", "encode failed")):
        return after.split(":")[0] + " (file untouched)"
    try:
        old = without(rdf_facts(before.decode("utf-8", "replace")))
    except Exception:  # the input itself does not parse: anything written is a loss of the original
        return "WROTE a packet from unparseable input: original content lost"
    new = without(rdf_facts(after))
    lost, gained = old - new, new - old
    if not lost and not gained:
        return "kept every other fact"
    return f"CHANGED: lost {sorted(lost)[:2]} gained {sorted(gained)[:2]}"


def main() -> None:
    try:
        import exiv2
    except ImportError:
        sys.exit("needs python-exiv2: pip install exiv2==0.19.2")
    print(f"python-exiv2 {exiv2.__version__}, libexiv2 {exiv2.version()}\n")
    for name, data in CASES.items():
        packet, logs = with_exiv2(data)
        print(f"{name}\n  exiv2: {verdict(data, packet)}" + (f"  [log: {'; '.join(logs)}]" if logs else ""))
        if "café" in name:
            print(
                f"         keyword read back as {[v for (k, v) in rdf_facts(packet) if k.endswith('subject[]')]}"
            )
        print(f"  tagan: {verdict(data, with_tagan(data))[:160]}")


if __name__ == "__main__":
    main()
