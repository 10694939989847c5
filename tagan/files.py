"""Files without surprises: regular-file opens that never block, atomic writes (text, JSON, CSV, npz); no torch."""

from __future__ import annotations

import csv
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from tagan.errors import NotRegularFileError


def file_kind(mode: int) -> str:
    """What a non-regular file is, from its st_mode ("a FIFO", "a folder", ...)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symbolic link")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path | str, *, follow: bool = True) -> IO[bytes]:
    """Open a regular file for reading; never blocks on a FIFO or device named like a file (NotRegularFileError).

    Stat first, then open with O_NONBLOCK (had the file been swapped for a FIFO since the stat, open won't wait),
    then fstat the file that is open. follow=False: a symlink is refused too (lstat, O_NOFOLLOW). The OSErrors
    of stat and open (missing, permission denied, a symlink loop) propagate.
    """
    st = os.stat(path) if follow else os.lstat(path)  # following: a link to a FIFO is a FIFO
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(file_kind(st.st_mode))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # the file that is open now, not the one stat saw
            raise NotRegularFileError("changed while opening")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def atomic_path(path: Path | str, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error remove it.

    mode: the permission bits the file gets (default: the umask's, as for a new file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_and_chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync_and_chmod(path: Path, mode: int | None = None) -> None:
    """Flush `path` to disk and give it `mode`, else the usual umask mode (mkstemp creates files 0600)."""
    if mode is None:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(path, mode)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: Path | str, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: Any) -> None:
    """Write standard JSON atomically (sorted keys, indented, trailing newline); NaN and inf become null."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    write_text(path, text + "\n")


def _finite(o: Any) -> Any:
    """`o` with every non-finite float (NaN, inf; also NumPy scalars) replaced by None, recursively."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not np.isfinite(o):
        return None
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path | str, rows: list[dict[str, Any]]) -> None:
    """Write a list of flat dicts as CSV atomically (header from the first row)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        fields = list(rows[0]) if rows else []
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """np.savez atomically, with fixed zip timestamps so equal arrays give equal bytes (and DVC hashes)."""
    import io
    import zipfile

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            # np.asarray, not ascontiguousarray: that turns 0-d scalars into shape (1,)
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
