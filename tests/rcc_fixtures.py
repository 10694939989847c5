"""A minimal Qt `.rcc` writer laid out like Qt's `rcc` tool (zlib / zstd / plain entries), for reader tests."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

from tagan.readers.rcc import FLAG_COMPRESSED, FLAG_COMPRESSED_ZSTD, FLAG_DIRECTORY, MAGIC, qt_hash


def write_rcc(
    files: Mapping[str, bytes], version: int = 3, compress: bool | str | Mapping[str, bool | str] = False
) -> bytes:
    """Build an ``.rcc`` blob the way Qt's ``rcc`` lays it out.

    Meant for tests and fixtures. ``compress`` is, for all files or per path: ``False`` (stored),
    ``True``/``"zlib"`` (qCompress: size prefix + zlib) or ``"zstd"`` (needs ``zstandard``).
    """
    if not 1 <= version <= 3:
        raise ValueError("version must be 1, 2 or 3")
    # Build a nested dict tree: dirs are dicts, files are bytes.
    root: dict = {}
    for p, content in files.items():
        parts = [s for s in p.strip("/").split("/") if s]
        node = root
        for d in parts[:-1]:
            node = node.setdefault(d, {})
        node[parts[-1]] = (p, content)

    names = bytearray()
    name_off: dict[str, int] = {}

    def add_name(n: str) -> int:
        if n not in name_off:
            name_off[n] = len(names)
            enc = n.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(enc) // 2, qt_hash(n)) + enc)
        return name_off[n]

    data = bytearray()
    # Breadth-first numbering: root = 0, each directory's children contiguous, sorted by hash.
    nodes: list[tuple[str, object]] = [("", root)]
    first_child: dict[int, int] = {}
    i = 0
    while i < len(nodes):
        _, obj = nodes[i]
        if isinstance(obj, dict):
            first_child[i] = len(nodes)
            for n in sorted(obj, key=lambda s: (qt_hash(s), s)):
                nodes.append((n, obj[n]))
        i += 1
    entry_size = 14 if version == 1 else 22
    tree = bytearray()
    for idx, (n, obj) in enumerate(nodes):
        noff = 0 if idx == 0 else add_name(n)
        if isinstance(obj, dict):
            tree += struct.pack(">IHII", noff, FLAG_DIRECTORY, len(obj), first_child[idx])
        else:
            path, content = obj
            how = compress.get(path, False) if isinstance(compress, Mapping) else compress
            if how == "zstd":
                import zstandard

                payload, flag = zstandard.ZstdCompressor().compress(content), FLAG_COMPRESSED_ZSTD
            elif how:
                payload, flag = struct.pack(">I", len(content)) + zlib.compress(content), FLAG_COMPRESSED
            else:
                payload, flag = content, 0
            tree += struct.pack(">IHHHI", noff, flag, 0, 1, len(data))
            data += struct.pack(">I", len(payload)) + payload
        if version >= 2:
            tree += struct.pack(">Q", 0)
        assert len(tree) == (idx + 1) * entry_size
    header_size = 24 if version >= 3 else 20
    tree_offset = header_size
    data_offset = tree_offset + len(tree)
    names_offset = data_offset + len(data)
    header = MAGIC + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    if version >= 3:
        header += struct.pack(">I", 0)
    return bytes(header + tree + data + names)
