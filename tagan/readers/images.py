"""Robust image decoding for real collections: any mode to RGB, EXIF orientation, reduced-size decode, bomb guard."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
DEFAULT_MAX_PIXELS = 50_000_000  # decoded pixels (after JPEG draft); above it a file is skipped, not decoded
_ALPHA_MODES = ("RGBA", "LA", "La", "RGBa", "PA")


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
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            yield path


class ImageError(Exception):
    """A file that cannot be used as an image; `reason` is a short human-readable cause."""

    def __init__(self, reason: str) -> None:
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


def load_image(path: Path | str, max_side: int = 512, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` to an RGB image whose longer side is at most `max_side`; raise ImageError with a reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"too large to decode safely (decompression-bomb guard: {e})") from None
    except OSError as e:
        raise ImageError(f"cannot open image ({e})") from None
    im = src
    try:
        if im.format == "JPEG":
            im.draft(None, (max_side, max_side))  # DCT scaling: decode at 1/2, 1/4 or 1/8 size
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
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as e:  # malformed EXIF should not lose the picture
            log.debug("%s: EXIF orientation ignored (%s)", path, e)
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
