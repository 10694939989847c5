"""Reader of Qt binary resource files (`.rcc`), as packed by Qt's `rcc` tool (GCompris ships its photos in them).

Format (Qt ``qresource.cpp`` reader / ``rcc.cpp`` writer), all integers big-endian:

* Header: ``b"qres"``, ``version`` (u32, 1..3), ``tree_offset``, ``data_offset``,
  ``names_offset`` (u32 each), and for version >= 3 an overall ``flags`` u32
  (which compression algorithms are used).
* Tree: an array of fixed-size entries, the root directory being entry 0. Each entry is
  ``name_offset`` (u32, into the names section), ``flags`` (u16), then either
  ``child_count`` (u32) + ``first_child`` (u32 entry index) for directories (flag 2), or
  ``country`` (u16) + ``language`` (u16) + ``data_offset`` (u32, into the data section)
  for files; version >= 2 appends ``last_modified`` (u64, ms since epoch). So entries are
  14 bytes (v1) or 22 bytes (v2, v3). Children of a directory are contiguous and sorted by
  name hash (``qt_hash``) so that Qt can binary-search them.
* Names: ``length`` (u16, UTF-16 code units), ``hash`` (u32), then UTF-16BE text.
* Data: ``length`` (u32) then the payload. Flag 1 (Compressed): payload is ``qCompress``
  output, i.e. a u32 uncompressed size followed by a zlib stream. Flag 4 (CompressedZstd):
  payload is a zstd frame.

Only the standard library is needed, plus ``zstandard`` for zstd-compressed entries.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tagan.errors import UserError

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04


class RccError(UserError):
    """A file that is not a readable Qt resource file."""


def qt_hash(name: str) -> int:
    """Qt's ``qt_hash`` of a string (over UTF-16 code units), as stored in the names section."""
    h = 0
    units = name.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = ((h << 4) + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


@dataclass(frozen=True)
class RccEntry:
    """One file of a resource: its path inside the resource (no leading ``:/``), flags, size."""

    path: str
    flags: int
    data_offset: int
    language: int = 0
    country: int = 0


class RccFile:
    """Random access to the files of one ``.rcc`` file (held in memory)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 20 or blob[:4] != MAGIC:
            raise RccError("not a Qt resource file (missing 'qres' magic)")
        self.version, self.tree_offset, self.data_offset, self.names_offset = struct.unpack_from(
            ">IIII", blob, 4
        )
        if not 1 <= self.version <= 3:
            raise RccError(f"unsupported rcc format version {self.version}")
        self.overall_flags = struct.unpack_from(">I", blob, 20)[0] if self.version >= 3 else 0
        for off in (self.tree_offset, self.data_offset, self.names_offset):
            if off >= len(blob):
                raise RccError("section offset beyond end of file")
        self.entry_size = 14 if self.version == 1 else 22
        self._blob = blob
        self._entries: list[RccEntry] | None = None

    @classmethod
    def open(cls, path: str | Path) -> RccFile:
        return cls(Path(path).read_bytes())

    # -- low level -----------------------------------------------------------------------
    def _name(self, name_offset: int) -> str:
        pos = self.names_offset + name_offset
        (length,) = struct.unpack_from(">H", self._blob, pos)
        start = pos + 6  # skip length (2) and hash (4)
        return self._blob[start : start + 2 * length].decode("utf-16-be")

    def _walk(self, node: int, prefix: str, depth: int = 0) -> Iterator[RccEntry]:
        if depth > 64:
            raise RccError("directory nesting too deep (corrupt tree?)")
        pos = self.tree_offset + node * self.entry_size
        name_off, flags = struct.unpack_from(">IH", self._blob, pos)
        name = "" if node == 0 else self._name(name_off)
        path = f"{prefix}/{name}" if prefix else name
        if flags & FLAG_DIRECTORY:
            count, first = struct.unpack_from(">II", self._blob, pos + 6)
            for child in range(first, first + count):
                yield from self._walk(child, path, depth + 1)
        else:
            country, language, data_off = struct.unpack_from(">HHI", self._blob, pos + 6)
            yield RccEntry(path, flags, data_off, language, country)

    # -- public API ----------------------------------------------------------------------
    def entries(self) -> list[RccEntry]:
        """All files (not directories), depth first in stored (hash) order."""
        if self._entries is None:
            self._entries = list(self._walk(0, ""))
        return self._entries

    def read(self, entry: RccEntry) -> bytes:
        """The (decompressed) content of one file."""
        pos = self.data_offset + entry.data_offset
        (length,) = struct.unpack_from(">I", self._blob, pos)
        payload = self._blob[pos + 4 : pos + 4 + length]
        if len(payload) != length:
            raise RccError(f"truncated data for {entry.path}")
        if entry.flags & FLAG_COMPRESSED:
            (expected,) = struct.unpack_from(">I", payload, 0)
            out = zlib.decompress(payload[4:])
            if len(out) != expected:
                raise RccError(f"zlib size mismatch for {entry.path}: {len(out)} != {expected}")
            return out
        if entry.flags & FLAG_COMPRESSED_ZSTD:
            import zstandard  # optional dependency, only for zstd entries

            return zstandard.ZstdDecompressor().decompressobj().decompress(payload)
        return bytes(payload)

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for e in self.entries():
            yield e.path, self.read(e)


def iter_rcc(path: str | Path, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """Yield ``(path, content)`` for every file in ``path`` whose resource path starts with ``prefix``."""
    rcc = RccFile.open(path)
    for e in rcc.entries():
        if e.path.startswith(prefix):
            yield e.path, rcc.read(e)


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """All files of an ``.rcc`` file as ``{resource path: content}``."""
    return dict(iter_rcc(path))
