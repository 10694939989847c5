"""Small shared helpers: seeding, devices, safe reads, atomic writes, checkpoints, logging, progress, stage entry."""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")
log = logging.getLogger(__name__)


class UserError(RuntimeError):
    """An error the user can fix (missing data, bad input); printed as one line, no traceback."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; any other torch device string as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for but CUDA is not available; use device: auto or cpu")
    return device


def set_threads(num_threads: int = 0) -> None:
    """Set torch intra-op threads (0 = leave torch's default, one per core)."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)


class NotRegularFileError(ValueError):
    """A path that is not a regular file: a folder, FIFO, socket, device (or a symlink, when not followed)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"not a regular file ({kind})")
        self.kind = kind  # "a FIFO", "a symbolic link", ...


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


def torch_save(path: Path | str, obj: Any) -> None:
    """torch.save atomically; byte-identical for identical `obj` (the zip's root is "archive", not the
    temp file's random name, so DVC sees the same hash when a re-run produces the same weights)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(
    path: Path | str, config: dict[str, Any], state_dict: dict[str, Any], **extra: Any
) -> None:
    """Write {'config', 'state_dict', **extra} atomically; config must hold plain types only."""
    torch_save(path, {"config": config, "state_dict": state_dict, **extra})


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by save_checkpoint (weights_only=True: no pickled code)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} not found; build it with `make repro` (dvc repro)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise UserError(
            f"checkpoint {path} is unreadable ({e.__class__.__name__}: {e}); rebuild it with dvc repro"
        ) from None


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr as 'LEVEL module: message'."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def progress(
    iterable: Iterable[T], *, desc: str = "", total: int | None = None, disable: bool | None = None
) -> Iterable[T]:
    """tqdm on stderr when it is a TTY; otherwise a log line every PROGRESS_LOG_S seconds (disable=True: silent)."""
    from tqdm.auto import tqdm

    if disable is None and not sys.stderr.isatty():
        return _logged(iterable, desc, total)
    return tqdm(iterable, desc=desc, total=total, disable=bool(disable), file=sys.stderr, leave=False)


PROGRESS_LOG_S = 30.0


def _logged(iterable: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    """Yield from `iterable`, logging `desc: i/total (p%), rate/s` at most every PROGRESS_LOG_S seconds."""
    plog = logging.getLogger("tagan.progress")
    t0 = last = time.perf_counter()
    i = 0
    for i, item in enumerate(iterable, 1):
        yield item
        now = time.perf_counter()
        if now - last >= PROGRESS_LOG_S:
            last = now
            share = f"/{total} ({100 * i / total:.0f}%)" if total else ""
            plog.info("%s: %d%s, %.1f/s", desc or "progress", i, share, i / (now - t0))


def stage_main(fn: Callable[[], Any]) -> None:
    """Run a stage's main(): params and user errors become one readable line and exit status 2."""
    from tagan.config import ParamsError

    setup_logging()
    try:
        fn()
    except ParamsError as e:
        print(f"error: params.yaml: {e}", file=sys.stderr)
        sys.exit(2)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; outputs written so far are complete, partial files were removed", file=sys.stderr)
        sys.exit(130)


def write_grid_png(path: Path, grid: np.ndarray, pad: int = 2) -> None:
    """Write images (rows, cols, H, W) in [0, 1] as one grey PNG with `pad` pixel gaps."""
    from PIL import Image

    rows, cols, h, w = grid.shape
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[
                pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w
            ] = grid[r, c]
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8), mode="L")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
