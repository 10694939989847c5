"""The Qt .rcc reader on resource files written by the test: zlib-compressed, zstd and plain entries, v1-v3."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from rcc_fixtures import write_rcc

from tagan.readers.rcc import RccError, RccFile, iter_rcc, qt_hash, read_rcc

FILES = {
    "a/readme.txt": b"hello " * 50,
    "a/b/c/deep.bin": bytes(range(256)) * 4,
    "a/b/image.webp": b"RIFF....WEBPVP8 " + b"\x00" * 100,
    "top.qml": "import QtQuick 2.12 // \u00e9\u00e8".encode(),
    "empty": b"",
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_roundtrip_zlib_and_plain(tmp_path: Path, version: int) -> None:
    path = tmp_path / "t.rcc"
    path.write_bytes(
        write_rcc(FILES, version=version, compress={"a/readme.txt": True, "a/b/c/deep.bin": True})
    )
    rcc = RccFile.open(path)
    assert rcc.version == version and rcc.entry_size == (14 if version == 1 else 22)
    assert read_rcc(path) == FILES
    flags = {e.path: e.flags for e in rcc.entries()}
    assert flags["a/readme.txt"] == 1 and flags["top.qml"] == 0  # zlib / stored
    assert dict(iter_rcc(path, prefix="a/b/")) == {k: v for k, v in FILES.items() if k.startswith("a/b/")}


def test_compressed_entry_is_qcompress(tmp_path: Path) -> None:
    """Qt's qCompress layout: a big-endian uncompressed size, then a zlib stream."""
    blob = write_rcc({"x": b"abc" * 100}, compress=True)
    rcc = RccFile(blob)
    (e,) = rcc.entries()
    pos = rcc.data_offset + e.data_offset
    (length,) = struct.unpack_from(">I", blob, pos)
    (size,) = struct.unpack_from(">I", blob, pos + 4)
    assert size == 300 and zlib.decompress(blob[pos + 8 : pos + 4 + length]) == b"abc" * 100


def test_zstd_entry() -> None:
    pytest.importorskip("zstandard")
    blob = write_rcc({"d/z.txt": b"zstd " * 40, "d/p.txt": b"plain"}, compress={"d/z.txt": "zstd"})
    assert dict(iter(RccFile(blob))) == {"d/z.txt": b"zstd " * 40, "d/p.txt": b"plain"}


def test_qt_hash_matches_qt() -> None:
    assert qt_hash("icon.png") == 0x0A615AA7  # as stored by Qt's rcc in a generated qrc_*.cpp


def test_not_an_rcc_file() -> None:
    with pytest.raises(RccError, match="qres"):
        RccFile(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(RccError, match="version"):
        RccFile(b"qres" + struct.pack(">IIII", 9, 20, 20, 20) + b"\x00" * 8)


def test_truncated_entry() -> None:
    blob = write_rcc({"f": b"x" * 100})
    with pytest.raises(RccError):  # the names section now starts beyond the end of the file
        list(RccFile(blob[:-60]))
