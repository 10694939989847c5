"""Small shared helpers that need torch: seeding, devices, threads, checkpoints, logging, progress, PNG grids."""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from tagan.errors import UserError
from tagan.files import atomic_path

T = TypeVar("T")
log = logging.getLogger(__name__)


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
