"""Robust image decoding for real collections: any mode to RGB, EXIF orientation, reduced-size decode, bomb guard.

Formats: what Pillow decodes (JPEG, PNG, TIFF, WebP, AVIF, ...), HEIC/HEIF through pillow-heif, and camera RAW
files through the embedded JPEG preview that LibRaw (rawpy) extracts, so a RAW costs about what its JPEG does.
Only regular files are ever opened: a FIFO, socket or device named like a photo is refused without blocking.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tagan.errors import NotRegularFileError
from tagan.files import open_regular

log = logging.getLogger(__name__)

try:  # HEIC / HEIF (phones); AVIF is native in Pillow >= 11.3
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)
    HEIF_READER: str | None = None
except ImportError:  # pragma: no cover - pinned in requirements.txt
    HEIF_READER = "HEIC/HEIF needs the Python package pillow-heif (pip install -r requirements.txt)"

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".mpo"}
    | {".heic", ".heif", ".hif", ".avif"}
)
# camera RAW formats LibRaw reads; tagged through their embedded preview (the camera's own JPEG rendering)
RAW_SUFFIXES = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf", ".orf", ".rw2"}
    | {".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mef", ".mos", ".rwl"}
)
# photo-like files tagan cannot decode: reported as skipped (with the reason) rather than silently ignored
UNSUPPORTED_SUFFIXES = frozenset({".jxl", ".psd", ".psb", ".xcf", ".exr", ".kra"})
PHOTO_SUFFIXES = IMAGE_SUFFIXES | RAW_SUFFIXES | UNSUPPORTED_SUFFIXES  # what the CLI picks up in folders
DEFAULT_MAX_PIXELS = 50_000_000  # decoded pixels (after JPEG draft); above it a file is skipped, not decoded


@dataclass
class TaggedImage:
    """One image of a tagged collection as a reader yields it (tags raw, cleaned later by tags_data)."""

    id: str  # stable and unique within the collection
    path: Path  # the image file to decode
    group: str  # near-duplicate series / leaf folder; the unit of the default split
    tags: list[str] = field(default_factory=list)


def list_images(root: Path) -> Iterator[Path]:
    """Image files under `root` (recursive, sorted, hidden files and folders skipped)."""
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES | RAW_SUFFIXES and path.is_file():
            yield path


class ImageError(Exception):
    """A file that cannot be used as an image; `reason` is a short human-readable cause."""

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())  # one line, whatever a decoder's message held
        super().__init__(reason)
        self.reason = reason


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float single-channel images scaled to 8-bit 'L' (PIL's own convert clips)."""
    a = np.asarray(im)  # (H, W) uint16 / int32 / float32
    if im.mode == "F":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo or 1.0) * 255.0
    elif a.max(initial=0) > 255:
        a = a.astype(np.float64) / 257.0  # 0..65535 -> 0..255
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L")


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to one of L, LA, RGB, RGBA (alpha kept for flattening, palette expanded)."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode == "PA":
        return im.convert("RGBA")
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(im)
    if mode in ("La", "RGBa"):
        return im.convert(mode.replace("a", "A"))
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def _flatten(im: Image.Image) -> Image.Image:
    """Composite an image with alpha over white and return RGB."""
    if im.mode in ("LA", "RGBA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _open_photo(path: Path | str) -> IO[bytes]:
    """Open `path` if it is a non-empty regular file; never blocks on a FIFO or device (ImageError)."""
    try:
        f = open_regular(path)
    except NotRegularFileError as e:
        raise ImageError(f"{e}; only regular files are read") from None
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    if os.fstat(f.fileno()).st_size == 0:
        f.close()
        raise ImageError("empty file (0 bytes)")
    return f


# LibRaw's `flip` (from the RAW's orientation) -> the transpose that shows the preview upright
_RAW_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def _raw_image(f: IO[bytes], path: Path, max_pixels: int) -> Image.Image:
    """The embedded preview of a camera RAW file (LibRaw); without one, a half-size demosaic."""
    import rawpy

    # LibRaw opens the file by name: give it the descriptor we checked (no race, no name-encoding issues)
    source = f"/proc/self/fd/{f.fileno()}" if os.path.isdir("/proc/self/fd") else str(path)
    try:
        raw = rawpy.imread(source)
    except rawpy.LibRawFileUnsupportedError:
        raise _NotRaw from None
    except (rawpy.LibRawError, rawpy.NotSupportedError, OSError) as e:
        raise ImageError(f"cannot read RAW file ({e.__class__.__name__}: {e})") from None
    with raw:
        try:
            thumb = raw.extract_thumb()  # the largest embedded preview, as stored (no decode)
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            thumb = None
        except (rawpy.LibRawError, OSError) as e:
            raise ImageError(f"corrupt RAW preview ({e.__class__.__name__}: {e})") from None
        if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
            im = Image.open(io.BytesIO(thumb.data))
            if raw.sizes.flip in _RAW_FLIP and im.getexif().get(0x0112, 1) == 1:
                im.info["tagan_transpose"] = _RAW_FLIP[raw.sizes.flip]  # applied after the reduced decode
            return im
        if thumb is not None:  # an uncompressed (bitmap) preview, already upright
            return Image.fromarray(np.ascontiguousarray(thumb.data))  # (H, W, 3) uint8
        w, h = raw.sizes.width, raw.sizes.height
        if w * h // 4 > max_pixels:
            raise ImageError(f"too large: RAW {w}x{h} px without a preview exceeds max_pixels={max_pixels}")
        try:
            rgb = raw.postprocess(
                half_size=True, use_camera_wb=True, output_bps=8
            )  # (H/2, W/2, 3), flip applied
        except (rawpy.LibRawError, OSError) as e:
            raise ImageError(f"corrupt RAW file ({e.__class__.__name__}: {e})") from None
        return Image.fromarray(rgb)


class _NotRaw(Exception):
    """LibRaw does not recognise the file (e.g. a JPEG named .CR2): let Pillow try it by its content."""


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size a JPEG must at least decode to for a longer side of max_side (DCT scaling goes no lower)."""
    w, h = size
    scale = max(w, h) / max_side
    return (max(1, int(w / scale)), max(1, int(h / scale))) if scale > 1 else (w, h)


def load_image(path: Path | str, max_side: int = 512, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` to an RGB image whose longer side is at most `max_side`; raise ImageError with a reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb warnings, "Corrupt EXIF data", ...: failures raise ImageError
        return _load(Path(path), max_side, max_pixels)


def _load(path: Path, max_side: int, max_pixels: int) -> Image.Image:
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED_SUFFIXES:
        raise ImageError(f"unsupported format ({suffix}): convert it to JPEG, PNG, TIFF, WebP, HEIC or AVIF")
    if HEIF_READER and suffix in (".heic", ".heif", ".hif"):
        raise ImageError(HEIF_READER)
    with _open_photo(path) as f:
        src = None
        try:
            if suffix in RAW_SUFFIXES:
                try:
                    src = _raw_image(f, path, max_pixels)
                except _NotRaw:
                    f.seek(0)
            if src is None:
                src = Image.open(f)
        except UnidentifiedImageError:
            kind = "not an image or RAW file LibRaw knows" if suffix in RAW_SUFFIXES else "not an image"
            raise ImageError(f"{kind} (unrecognised format)") from None
        except Image.DecompressionBombError as e:
            raise ImageError(f"too large to decode safely (decompression-bomb guard: {e})") from None
        except ImageError:
            raise
        except Exception as e:  # any other opener failure (OSError, SyntaxError, a plugin's own) is a skip
            raise ImageError(f"cannot open image ({e.__class__.__name__}: {e})") from None
        return _finish(src, path, max_side, max_pixels)


def _finish(src: Image.Image, path: Path, max_side: int, max_pixels: int) -> Image.Image:
    """Reduced decode (JPEG DCT scaling), bomb guard, EXIF orientation, mode, shrink to max_side, flatten."""
    im = src
    try:
        if im.format == "JPEG":
            im.draft(None, _draft_size(im.size, max_side))  # DCT scaling: decode at 1/2, 1/4 or 1/8 size
        w, h = im.size
        if w * h > max_pixels:
            raise ImageError(
                f"too large: {w}x{h} px exceeds max_pixels={max_pixels} (decompression-bomb guard); "
                "raise max_pixels to include it"
            )
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"corrupt or truncated image ({e})") from None
        transpose = im.info.get("tagan_transpose")
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as e:  # malformed EXIF should not lose the picture
            log.debug("%s: EXIF orientation ignored (%s)", path, e)
        if transpose is not None:
            im = im.transpose(transpose)
        im = _normalise_mode(im)
        if max(im.size) > max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return _flatten(im)
    except ImageError:
        raise
    except Exception as e:  # any other decoder failure is a per-file skip, never fatal
        raise ImageError(f"cannot decode image ({e.__class__.__name__}: {e})") from None
    finally:
        src.close()


# Truncated files must fail loudly (ImageError), never be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
