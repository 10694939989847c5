"""MIR Flickr 25k: MD5-checked download, safe zip extraction, processed user tags plus the 24 concept annotations."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import urllib.request
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tagan.errors import UserError
from tagan.files import atomic_path
from tagan.readers.images import TaggedImage

log = logging.getLogger(__name__)

_IMAGE = re.compile(r"im(\d+)\.jpg")


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Raise UserError unless `path` has MD5 `expected` (an empty `expected` skips the check)."""
    if not expected:
        log.warning("%s: no MD5 given, not verified", path)
        return
    got = md5sum(path)
    if got.lower() != expected.lower():
        raise UserError(
            f"{path}: MD5 mismatch (expected {expected}, got {got}): the download is incomplete or corrupt; "
            "delete the file and run again"
        )


def download(url: str, dest: Path, md5: str) -> Path:
    """Download `url` to `dest` atomically unless it is already there, then verify its MD5."""
    dest = Path(dest)
    if not dest.is_file():
        log.info("downloading %s -> %s", url, dest)
        try:
            with (
                atomic_path(dest) as tmp,
                urllib.request.urlopen(url, timeout=60) as resp,
                open(tmp, "wb") as f,
            ):
                shutil.copyfileobj(resp, f, 1 << 20)
        except OSError as e:
            raise UserError(
                f"cannot download {url} ({e}); check the network, or place the file at {dest}"
            ) from None
    verify_md5(dest, md5)
    return dest


def _safe_member(name: str) -> PurePosixPath:
    """The relative path of a zip entry, or UserError if it is absolute or climbs out with '..'."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", normalised) or ".." in path.parts:
        raise UserError(
            f"unsafe archive entry {name!r} would land outside the target folder; archive rejected"
        )
    return path


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a zip into `target`, rejecting (before writing anything) entries that would escape it."""
    target = Path(target)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise UserError(f"{archive}: not a valid zip archive; delete it and download again") from None
    with zf:
        members = [(info, _safe_member(info.filename)) for info in zf.infolist()]
        root = target.resolve()
        for info, rel in members:
            dest = (root / rel).resolve()
            if not dest.is_relative_to(root):  # e.g. through a symlink already in the target
                raise UserError(
                    f"unsafe archive entry {info.filename!r} resolves outside {root}; archive rejected"
                )
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def prepare(root: Path, *, images: tuple[str, str], annotations: tuple[str, str]) -> Path:
    """Download (MD5-checked) and extract both archives under `root` once; returns the extraction folder."""
    root = Path(root)
    extracted = root / "extracted"
    done = extracted / ".complete"
    if done.is_file():
        return extracted
    for url, md5 in (images, annotations):
        archive = download(url, root / Path(url).name, md5)
        safe_extract(archive, extracted)
    done.write_text("ok\n")
    return extracted


def _find(root: Path, pattern: str) -> Path | None:
    """The shallowest folder under `root` holding a file that matches `pattern`."""
    hits = sorted(root.rglob(pattern), key=lambda p: (len(p.parts), str(p)))
    return hits[0].parent if hits else None


def read_mirflickr(root: Path) -> Iterator[TaggedImage]:
    """Images with processed user tags plus concept annotations as extra tags; untagged images dropped."""
    root = Path(root)
    image_dir = _find(root, "im*.jpg")
    if image_dir is None:
        raise UserError(f"no MIR Flickr images (im*.jpg) under {root}; check tags_data.mirflickr_root")
    tag_dir = image_dir / "meta" / "tags"
    concepts: dict[int, list[str]] = defaultdict(list)
    ann_dir = _find(root, "README.txt")
    for ann in sorted(ann_dir.glob("*.txt")) if ann_dir else []:
        if ann.name == "README.txt" or ann.stem.endswith("_r1"):
            continue  # *_r1: the 'relevant' subsets repeat the base concept
        for line in ann.read_text(encoding="utf-8", errors="replace").split():
            if line.isdigit():
                concepts[int(line)].append(ann.stem)
    images = sorted(
        (int(m.group(1)), p) for p in image_dir.glob("im*.jpg") if (m := _IMAGE.fullmatch(p.name))
    )
    dropped = 0
    for n, path in images:
        tag_file = tag_dir / f"tags{n}.txt"
        user = tag_file.read_text(encoding="utf-8", errors="replace").split() if tag_file.is_file() else []
        tags = list(dict.fromkeys(user + concepts.get(n, [])))
        if not tags:
            dropped += 1
            continue
        yield TaggedImage(id=f"im{n}", path=path, group=f"im{n}", tags=tags)
    log.info("mirflickr: %d images, %d untagged dropped", len(images) - dropped, dropped)
