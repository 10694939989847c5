"""Real files of the formats photo folders hold, generated small: HEIC, AVIF and a minimal valid DNG (camera RAW).

The DNG is a TIFF whose IFD0 is a JPEG preview (NewSubfileType 1, Compression 7, as cameras and Adobe's
converter write it) and whose SubIFD is a 16-bit Bayer CFA raw image; LibRaw (rawpy) and exiftool both read it.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# TIFF field types: size in bytes of one value
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 10: 8}
BYTE, ASCII, SHORT, LONG, SRATIONAL = 1, 2, 3, 4, 10


def picture(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth random RGB picture (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def _shorts(*v: int) -> bytes:
    return struct.pack(f"<{len(v)}H", *v)


def _longs(*v: int) -> bytes:
    return struct.pack(f"<{len(v)}I", *v)


def _ascii(text: str) -> bytes:
    return text.encode("ascii") + b"\0"


def _ifd(entries: list[tuple[int, int, bytes]], offset: int) -> bytes:
    """One little-endian IFD at file `offset`: (tag, type, value bytes) entries, values > 4 bytes after it."""
    entries = sorted(entries)
    size = 2 + 12 * len(entries) + 4
    table, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, value in entries:
        count = len(value) // _TYPE_SIZE[kind]
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, offset + size + len(extra))
            extra += value + b"\0" * (len(value) % 2)
    return table + _longs(0) + extra  # next-IFD offset 0: one IFD chain


def make_dng(
    path: Path,
    rgb: np.ndarray,
    *,
    orientation: int = 1,
    preview: bool = True,
    raw_size: tuple[int, int] = (64, 48),
) -> Path:
    """Write a minimal DNG: JPEG preview of `rgb` (H, W, 3) in IFD0 (unless preview=False), Bayer raw in a SubIFD."""
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, "JPEG", quality=90)
    jpeg_bytes = jpeg.getvalue() + b"\0" * (len(jpeg.getvalue()) % 2)
    h, w = rgb.shape[:2]
    rw, rh = raw_size
    raw = np.random.default_rng(0).integers(0, 4096, (rh, rw)).astype("<u2").tobytes()  # 12-bit Bayer
    jpeg_at, raw_at = 8, 8 + len(jpeg_bytes)
    first_ifd = raw_at + len(raw)
    identity = b"".join(struct.pack("<ii", v, 10000) for v in (10000, 0, 0, 0, 10000, 0, 0, 0, 10000))
    camera = [(271, ASCII, _ascii("Test")), (272, ASCII, _ascii("DNG")), (274, SHORT, _shorts(orientation)),
              (50706, BYTE, bytes([1, 4, 0, 0])), (50707, BYTE, bytes([1, 1, 0, 0])),
              (50708, ASCII, _ascii("tagan test")), (50721, SRATIONAL, identity), (50778, SHORT, _shorts(21))]  # fmt: skip
    bayer = [(254, LONG, _longs(0)), (256, LONG, _longs(rw)), (257, LONG, _longs(rh)), (258, SHORT, _shorts(16)),
             (259, SHORT, _shorts(1)), (262, SHORT, _shorts(32803)), (273, LONG, _longs(raw_at)),
             (277, SHORT, _shorts(1)), (278, LONG, _longs(rh)), (279, LONG, _longs(len(raw))),
             (33421, SHORT, _shorts(2, 2)), (33422, BYTE, bytes([0, 1, 1, 2])), (50717, LONG, _longs(4095))]  # fmt: skip
    if preview:
        ifd0 = [(254, LONG, _longs(1)), (256, LONG, _longs(w)), (257, LONG, _longs(h)),
                (258, SHORT, _shorts(8, 8, 8)), (259, SHORT, _shorts(7)), (262, SHORT, _shorts(6)),
                (273, LONG, _longs(jpeg_at)), (277, SHORT, _shorts(3)), (278, LONG, _longs(h)),
                (279, LONG, _longs(len(jpeg.getvalue()))), *camera]  # fmt: skip
        sub_at = first_ifd + len(_ifd([*ifd0, (330, LONG, _longs(0))], first_ifd))
        body = _ifd([*ifd0, (330, LONG, _longs(sub_at))], first_ifd) + _ifd(bayer, sub_at)
    else:
        body = _ifd([*bayer, *camera], first_ifd)
    path.write_bytes(b"II*\0" + _longs(first_ifd) + jpeg_bytes + raw + body)
    return path


def make_heic(path: Path, rgb: np.ndarray) -> Path:
    """An HEIC (HEVC in HEIF) file, as phones write, via pillow-heif's encoder."""
    import tagan.readers.images  # noqa: F401  (registers the HEIF plugin with Pillow)

    Image.fromarray(rgb).save(path, "HEIF", quality=80)
    return path


def make_avif(path: Path, rgb: np.ndarray) -> Path:
    """An AVIF (AV1 in HEIF) file via Pillow's own AVIF plugin."""
    Image.fromarray(rgb).save(path, "AVIF", quality=80)
    return path
