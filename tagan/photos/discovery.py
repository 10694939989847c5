"""Finding photos: folders walked once each (loop-safe), RAW+JPEG twins kept together, bounded chunks."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tagan.readers.images import IMAGE_SUFFIXES, PHOTO_SUFFIXES, RAW_SUFFIXES

log = logging.getLogger(__name__)


def first_time(seen: set[Any], key: Any) -> bool:
    """True the first time `key` comes (it is remembered in `seen`): each photo, folder or sidecar once."""
    if key in seen:
        return False
    seen.add(key)
    return True


def iter_photos(
    paths: Iterable[Path],
    *,
    exclude: Iterable[str] = (),
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Photos under `paths` (files as given; folders recursively, photo suffixes only), each once, loop-safe.

    In a folder a RAW and its JPEG twin (IMG_1.CR2, IMG_1.JPG) come one after the other. A folder that cannot
    be listed is passed to `on_error(folder, reason)` (default: a warning) instead of being skipped silently.
    """
    patterns = list(exclude)
    seen_files: set[str] = (
        set()
    )  # real paths: a file reached through symlinks is tagged once (hard links are distinct)
    seen_dirs: set[tuple[int, int]] = set()  # (device, inode) of folders walked: symlink loops end here

    def report(error: OSError) -> None:
        reason = f"cannot list folder ({error.strerror or error})"
        if on_error is None:
            log.warning("%s: %s", error.filename, reason)
        else:
            on_error(Path(error.filename), reason)

    def excluded(path: Path, root: Path) -> bool:
        rel = path.relative_to(root).as_posix() if path != root else path.name
        return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel, p) for p in patterns)

    def first_file(path: Path) -> bool:
        return first_time(seen_files, os.path.realpath(path))

    def first_dir(path: Path) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        return first_time(seen_dirs, (st.st_dev, st.st_ino))

    for root in paths:
        root = Path(root)
        if not root.is_dir():
            if not excluded(root, root) and first_file(root):
                yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=report):
            here = Path(dirpath)
            if not first_dir(here):  # a symlink loop or a folder reached twice
                dirnames[:] = []
                continue
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not excluded(here / d, root)
            )
            link = {n: os.path.islink(here / n) for n in filenames}
            # twins adjacent (IMG_1.CR2, IMG_1.JPG); symlinks last: a photo and a link to it report the photo
            for name in sorted(filenames, key=lambda n: (link[n], os.path.splitext(n)[0], n)):
                path = here / name
                if (
                    not name.startswith(".")
                    and path.suffix.lower() in PHOTO_SUFFIXES
                    and not excluded(path, root)
                    and first_file(path)
                ):
                    yield path


def twin_key(path: Path) -> tuple[Path, str]:
    """Photos with the same key are one shot in several files (IMG_1.CR2 + IMG_1.JPG): same folder and stem."""
    return path.parent, path.stem


def photo_chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    """Lists of about `size` consecutive paths (bounded memory) that never split a RAW from its twin."""
    chunk: list[Path] = []
    for path in paths:
        if len(chunk) >= size and twin_key(path) != twin_key(chunk[-1]):
            yield chunk
            chunk = []
        chunk.append(path)
    if chunk:
        yield chunk


def twin_sources(paths: list[Path]) -> dict[Path, Path]:
    """RAW path -> the JPEG/HEIC twin among `paths` whose decoded features it reuses (the twin is cheaper)."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for path in paths:
        groups.setdefault(twin_key(path), []).append(path)
    plan = {}
    for group in groups.values():
        images = [p for p in group if p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            plan.update({p: images[0] for p in group if p.suffix.lower() in RAW_SUFFIXES})
    return plan
