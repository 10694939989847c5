"""What a photo's tags were made from, recorded in its sidecar, and whether a new run must tag it again.

Each sidecar tagan writes carries `tagan:made`: JSON {photo file name: record}, one record per photo that
shares the sidecar (IMG_1.CR2 and IMG_1.JPG share IMG_1.xmp with --xmp-style stem). A record holds the photo's
size, mtime_ns and a cheap content hash (blake2b of its size, first and last 64 KiB), the model id (bundle
content + method) and the settings that change the tags (top-k, min-score, samples, seed, vocab file hash,
runtime). A photo is `cached` when all of these match; else it is tagged again and the record says why:
"photo changed" (size or hash differ; a new mtime with the same hash is a touch, still cached), "model
changed", "settings changed (top_k 10 -> 5)", or "made by an older tagan" (a sidecar with tagan's model mark
but no made-from record: tagan before this ledger recorded only the model, so what the tags came from is unknown).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagan.errors import NotRegularFileError
from tagan.files import open_regular
from tagan.readers.xmp import MADE_ATTR, MODEL_ATTR, TAGS_ATTR, XmpError, load_packet, ns_name

EDGE_BYTES = 64 << 10  # the hash reads this much from each end of a photo


def content_hash(path: Path, size: int) -> str:
    """blake2b of the size, the first and the last 64 KiB: a replaced or re-encoded photo changes it, cheaply."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open_regular(path) as f:  # a FIFO named like a photo must not block
        digest.update(f.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            f.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(f.read(EDGE_BYTES))
    return digest.hexdigest()


def fingerprint(path: Path, like: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """{"size", "mtime_ns", "blake2b"} of a photo (following links, as the tagger reads it); None if unreadable.

    like: a recorded fingerprint; when its size and mtime match, its hash is taken as is (no read).
    """
    try:
        st = os.stat(path)
        if (
            like
            and (like.get("size"), like.get("mtime_ns")) == (st.st_size, st.st_mtime_ns)
            and like.get("blake2b")
        ):
            digest = like["blake2b"]
        else:
            digest = content_hash(path, st.st_size)
    except (OSError, NotRegularFileError):
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake2b": digest}


def file_hash(path: Path | None) -> str | None:
    """blake2b of a whole (small) file such as --vocab; None for no file."""
    if path is None:
        return None
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


@dataclass
class Ledger:
    """What one sidecar records: the model of its last tags, those tags, and the made-from record per photo."""

    model: str | None = None
    tags: list[tuple[str, float]] = field(default_factory=list)
    made: dict[str, Any] | None = None  # None: no made-from ledger at all (no sidecar, or an older tagan's)


def read_ledger(sidecar: Path) -> Ledger:
    """The sidecar's ledger in one read; an empty one when there is no sidecar or it cannot be read."""
    try:
        loaded = load_packet(Path(sidecar), follow=True)
    except (OSError, XmpError):
        return Ledger()
    if loaded is None:
        return Ledger()
    attrs: dict[str, str] = {}
    for desc in loaded[0].iter(ns_name("rdf", "Description")):
        for key in (MODEL_ATTR, TAGS_ATTR, MADE_ATTR):
            if key in desc.attrib:
                attrs.setdefault(key, desc.attrib[key])
    ledger = Ledger(model=attrs.get(MODEL_ATTR))
    try:
        ledger.tags = (
            [(str(t), float(s)) for t, s in json.loads(attrs[TAGS_ATTR])] if TAGS_ATTR in attrs else []
        )
    except (ValueError, TypeError):
        ledger.tags = []
    if MADE_ATTR in attrs:
        try:
            made = json.loads(attrs[MADE_ATTR])
        except ValueError:
            made = None
        ledger.made = made if isinstance(made, dict) else {}
    return ledger


def made_record(photo: dict[str, Any] | None, model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The made-from record of one photo (its fingerprint, the model id, the settings)."""
    return {**(photo or {}), "model": model, "settings": settings}


def retag_reason(
    ledger: Ledger, photo_name: str, photo: dict[str, Any] | None, model: str, settings: dict[str, Any]
) -> str | None:
    """None when the photo's tags in the sidecar are still what this run would make (`cached`); else why not.

    "new" when tagan never tagged this photo (no model mark, or a made-from ledger without this photo).
    """
    if ledger.model is None:
        return "new"
    if ledger.made is None:
        return "made by an older tagan"
    record = ledger.made.get(photo_name)
    if not isinstance(record, dict):
        return "new"
    if record.get("model") != model:
        return "model changed"
    if photo is None or (record.get("size"), record.get("blake2b")) != (photo["size"], photo["blake2b"]):
        return "photo changed"
    old = record.get("settings") if isinstance(record.get("settings"), dict) else {}
    diff = [f"{k} {old.get(k)} -> {v}" for k, v in settings.items() if old.get(k) != v]
    if diff:
        return f"settings changed ({', '.join(diff)})"
    return None
