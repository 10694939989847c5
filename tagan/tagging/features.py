"""Image features: robust batched decoding + a pretrained backbone's pooled features (stage and CLI share it).

With `faces=True` the decode workers also run the face detector (tagan.tagging.faces) on the same decoded image
(at most `max_side`, 320 px: 41 of 57 people photos found as at 640 px's 43, in half the time and with no second
decode), so people are seen by the same code in photo_eval and in `tagan tag`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from tagan.config import check, positive
from tagan.errors import UserError
from tagan.files import save_npz, write_json, write_text
from tagan.models.backbones import RUNTIMES, Backbone
from tagan.readers.images import DEFAULT_MAX_PIXELS, ImageError, load_image

log = logging.getLogger(__name__)
RESUME_DIR = (
    Path(os.environ.get("TAGAN_RESUME_DIR", ".resume")) / "image_features"
)  # shard files, git-ignored


@dataclass
class FeatureConfig:
    """How features are extracted: backbone, input size and fit, batching, decoding limits.

    The tagger bundle carries this config, so the CLI extracts features exactly as the pipeline did.
    """

    backbone: str = "efficientnet_lite0"  # or a torchvision model (resnet50, ...) with locally cached weights
    image_size: int = 224  # network input side
    fit: Literal["crop", "pad"] = (
        "crop"  # crop: ImageNet centre crop; pad: whole image padded square on white
    )
    batch_size: int = 4
    max_side: int = (
        320  # images are decoded (JPEG draft) and shrunk to at most this side before the transform
    )
    max_pixels: int = DEFAULT_MAX_PIXELS  # decompression-bomb guard: bigger files are skipped with a reason
    runtime: str = "auto"  # auto (onnxruntime on a CPU, torch on CUDA) | onnxruntime | openvino | torch

    def __post_init__(self) -> None:
        for key in ("image_size", "batch_size", "max_pixels"):
            positive(key, getattr(self, key))
        check(
            self.runtime in RUNTIMES, "runtime", f"must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
        )
        check(self.max_side >= self.image_size, "max_side", f"must be >= image_size ({self.image_size})")


class Extracted(NamedTuple):
    """One photo's result: its feature (F,) and face evidence (or None), or the reason it was skipped."""

    path: Path
    feature: np.ndarray | None
    reason: str | None
    faces: np.ndarray | None = None  # tagan.tagging.faces.face_evidence, when asked for


@dataclass
class _Decoder:
    """Decode a batch of paths: load_image + the backbone's transform (+ face evidence) per path; a failure is
    (None, reason, None). Picklable: decode worker processes run it."""

    transform: Callable[[Any], np.ndarray]
    max_side: int
    max_pixels: int
    faces: bool

    def __call__(self, paths: list[Path]) -> list[tuple[np.ndarray | None, str | None, np.ndarray | None]]:
        out: list[tuple[np.ndarray | None, str | None, np.ndarray | None]] = []
        for path in paths:
            try:
                image = load_image(path, self.max_side, max_pixels=self.max_pixels)
                evidence = None
                if self.faces:
                    from tagan.tagging.faces import detect_evidence

                    evidence = detect_evidence(image)
            except ImageError as e:
                out.append((None, e.reason, None))
                continue
            out.append((self.transform(image), None, evidence))  # (3, S, S)
        return out


def _worker_init(parent: int) -> None:
    """A decode worker: Ctrl-C is the main process's to handle, and it exits when the main process is gone (even
    by `kill -9`: a watchdog thread, as torch's DataLoader workers have); one thread for numpy's BLAS (the face
    detector's crop resizing: BLAS's own threads made `tagan tag` 2x slower with faces on, at 2x the CPU time)
    and torch."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    threadpool_limits(1)
    if "torch" in sys.modules:  # inherited from a stage that uses it
        sys.modules["torch"].set_num_threads(1)


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _decode_ahead(decode: _Decoder, batches: list[list[Path]], workers: int) -> Iterator[list]:
    """decode(batch) for every batch, in order, in `workers` processes with at most 2 batches per worker ahead."""
    with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        pending: deque[tuple[list[Path], Future]] = deque()
        try:
            for batch in batches:
                pending.append((batch, pool.submit(decode, batch)))
                if len(pending) > 2 * workers:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()


def _result(batch: list[Path], future: Future) -> list:
    try:
        return future.result()
    except BrokenProcessPool:
        raise UserError(
            f"a decode worker died (a crashing image decoder, or out of memory) at or after {batch[0]}; decode "
            "in one process (--workers 0) to find the photo, then leave it out (--exclude)"
        ) from None


def extract_features(
    paths: Iterable[Path],
    backbone: Backbone,
    *,
    batch_size: int = 4,
    workers: int = 2,
    max_side: int = 320,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    faces: bool = False,
) -> Iterator[Extracted]:
    """Yield an Extracted per path, in input order: its (dim,) float32 feature (and face evidence when `faces`),
    or None and the reason.

    Worker processes decode (load_image + backbone.transform) while this process runs the network; at most
    about (workers * 2 + 1) batches are in memory at once. One batch or less is decoded in this process:
    starting workers would cost more than it saves (~0.25 s).
    """
    paths = [Path(p) for p in paths]
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    decode = _Decoder(backbone.transform, max_side, max_pixels, faces)
    decoded = (
        _decode_ahead(decode, batches, workers) if workers and len(batches) > 1 else map(decode, batches)
    )
    for batch, items in zip(batches, decoded):
        ok = [x for x, _, _ in items if x is not None]
        feats = backbone(np.stack(ok)) if ok else None  # (B_ok, dim)
        k = 0
        for path, (_, reason, evidence) in zip(batch, items):
            if reason is None:
                assert feats is not None
                yield Extracted(path, feats[k], None, evidence)
                k += 1
            else:
                yield Extracted(path, None, reason)


def shard_bounds(n: int, num_shards: int, batch_size: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges aligned to whole batches, so shards batch exactly like one process."""
    batches = -(-n // batch_size)
    per = -(-batches // num_shards)
    return [(min(n, s * per * batch_size), min(n, (s + 1) * per * batch_size)) for s in range(num_shards)]


def run_key(cfg: FeatureConfig, ids: list[str], paths: list[str]) -> str:
    """Hash of everything that determines the features (params that matter + the image list)."""
    h = hashlib.sha256(
        json.dumps(
            [cfg.backbone, cfg.image_size, cfg.fit, cfg.batch_size, cfg.max_side, cfg.max_pixels, cfg.runtime]
        ).encode()
    )
    for i, p in zip(ids, paths):
        h.update(f"{i}\0{p}\n".encode())
    return h.hexdigest()[:16]


def shard_path(resume: Path, shard: int, num_shards: int) -> Path:
    return resume / f"shard-{shard:03d}-of-{num_shards:03d}.npz"


def compute_shard(
    cfg: FeatureConfig, workers: int, backbone: Backbone, ids: list[str], paths: list[str], out: Path
) -> dict[str, Any]:
    """Extract one shard's features and write them atomically to `out` (ids, features, skipped)."""
    from tagan.utils import progress  # torch: the stage only

    t0 = time.perf_counter()
    keep_ids, feats, skipped = [], [], []
    stream = extract_features(
        [Path(p) for p in paths], backbone, batch_size=cfg.batch_size, workers=workers,
        max_side=cfg.max_side, max_pixels=cfg.max_pixels,
    )  # fmt: skip
    for image_id, (path, feat, reason, _) in progress(zip(ids, stream), desc=out.stem, total=len(ids)):
        if feat is None:
            skipped.append(json.dumps({"id": image_id, "path": str(path), "reason": reason}))
        else:
            keep_ids.append(image_id)
            feats.append(feat)
    features = np.stack(feats).astype(np.float32) if feats else np.zeros((0, backbone.dim), np.float32)
    seconds = time.perf_counter() - t0
    save_npz(out, ids=np.array(keep_ids, dtype=str), features=features, skipped=np.array(skipped, dtype=str),
             seconds=np.float64(seconds))  # fmt: skip
    return {"images": len(keep_ids), "skipped": len(skipped), "seconds": seconds}


def merge(
    resume: Path, num_shards: int, cfg: FeatureConfig, out_dir: Path, metrics_path: Path, *, wall: float
) -> dict:
    """Concatenate shard files in order into features.npz + skipped.jsonl + config.json (the FeatureConfig the
    tagger bundle carries), write metrics, drop the shards."""
    backbone = cfg.backbone
    parts = [np.load(shard_path(resume, s, num_shards)) for s in range(num_shards)]
    ids = np.concatenate([p["ids"] for p in parts]).astype(str)
    features = np.concatenate([p["features"] for p in parts]).astype(np.float32)  # (N, F)
    skipped = [json.loads(line) for p in parts for line in p["skipped"].tolist()]
    seconds = float(sum(np.asarray(p["seconds"]).sum() for p in parts))  # extraction time summed over shards
    out_dir = Path(out_dir)
    save_npz(out_dir / "features.npz", ids=ids, features=features, backbone=np.array(backbone))
    write_text(out_dir / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped))
    write_json(out_dir / "config.json", {f.name: getattr(cfg, f.name) for f in fields(FeatureConfig)})
    n = len(ids) + len(skipped)
    metrics = {
        "images": len(ids),
        "skipped": len(skipped),
        "feature_dim": int(features.shape[1]),
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 2) if seconds > 0 else 0.0,
        "wall_seconds": round(wall, 3),
    }
    write_json(metrics_path, metrics)
    shutil.rmtree(resume, ignore_errors=True)
    log.info(
        "image_features: %d images (%d skipped), %.1f images/s",
        len(ids),
        len(skipped),
        metrics["images_per_s"],
    )
    return metrics


def feature_config(features_path: Path, backbone: str) -> FeatureConfig:
    """The FeatureConfig that produced features.npz (its config.json), or the defaults for `backbone`."""
    path = Path(features_path).parent / "config.json"
    if path.is_file():
        from tagan.config import from_dict

        return from_dict(FeatureConfig, json.loads(path.read_text()), "features")
    return FeatureConfig(backbone=backbone)


def load_backbone(cfg: FeatureConfig, device: str = "cpu") -> Backbone:
    """The backbone exactly as `cfg` extracts features (name, input size, fit, runtime): the image_features
    stage, photo_eval and the CLI all build it here."""
    from tagan.models.backbones import build_backbone

    return build_backbone(cfg.backbone, device, image_size=cfg.image_size, fit=cfg.fit, runtime=cfg.runtime)


def load_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) str, features (N, F) float32) from a features.npz written by merge()."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run `dvc repro image_features` first")
    with np.load(path) as z:
        return z["ids"].astype(str), z["features"].astype(np.float32)
