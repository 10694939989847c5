"""Benchmark feature extraction side by side: the stage's batched pipeline vs a naive one-image-at-a-time loop.

    python scripts/bench_features.py [--items data/tags/items.jsonl] [--n 256] [--rounds 2]

The naive loop decodes each file at full size (no draft / reduced decode), transforms it and runs the
network on a batch of one in NCHW with torch.no_grad, in one process. The fast path is
`image_features.extract_features`: DataLoader workers decode at reduced size, batches in channels_last
under inference_mode. Both see the same images; rounds alternate (naive, fast, naive, fast, ...) so that
load from other processes hits both alike. Prints images/s of each and the ratio (median over rounds),
plus CPU seconds per image of the whole process tree (workers included), which a shared machine
disturbs less than wall time: 2 / (CPU s per image) estimates images/s on 2 dedicated cores.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagan.features import extract_features  # noqa: E402
from tagan.models.backbones import build_backbone  # noqa: E402
from tagan.readers.images import ImageError, load_image  # noqa: E402
from tagan.readers.items import read_items  # noqa: E402
from tagan.utils import setup_logging  # noqa: E402

log = logging.getLogger("bench_features")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def naive(paths: list[Path], backbone, max_pixels: int) -> float:
    """Images/s of a one-image-at-a-time loop (full-size decode, batch 1, NCHW)."""
    t0 = time.perf_counter()
    for p in paths:
        try:
            image = load_image(p, max_side=10**6, max_pixels=max_pixels)  # full-size decode
        except ImageError:
            continue
        x = backbone.transform(image)[None]  # (1, 3, S, S)
        with torch.no_grad():
            backbone.net(x)
    return len(paths) / (time.perf_counter() - t0)


def fast(paths: list[Path], backbone, batch_size: int, workers: int, max_side: int, max_pixels: int) -> float:
    """Images/s of the stage's extract_features (workers, batches, reduced-size decode, channels_last)."""
    t0 = time.perf_counter()
    n = sum(1 for _ in extract_features(paths, backbone, batch_size=batch_size, workers=workers,
                                        max_side=max_side, max_pixels=max_pixels))  # fmt: skip
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=Path, default=Path("data/tags/items.jsonl"))
    ap.add_argument("--n", type=int, default=256, help="images (an evenly spaced sample of items.jsonl)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--max-pixels", type=int, default=50_000_000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0 = default)")
    args = ap.parse_args()
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = read_items(args.items)
    step = max(1, len(rows) // args.n)
    paths = [Path(r["path"]) for r in rows[::step][: args.n]]
    backbone = build_backbone("efficientnet_lite0", "cpu", image_size=args.image_size)
    naive(paths[:4], backbone, args.max_pixels)  # warm-up: allocator, oneDNN primitives
    results: dict[str, list[float]] = {"naive": [], "fast": []}
    cpu: dict[str, list[float]] = {"naive": [], "fast": []}  # CPU seconds per image
    for r in range(args.rounds):
        c0 = cpu_seconds()
        results["naive"].append(naive(paths, backbone, args.max_pixels))
        c1 = cpu_seconds()
        results["fast"].append(
            fast(paths, backbone, args.batch_size, args.workers, args.max_side, args.max_pixels)
        )
        cpu["naive"].append((c1 - c0) / len(paths))
        cpu["fast"].append((cpu_seconds() - c1) / len(paths))
        log.info("round %d: naive %.1f img/s, fast %.1f img/s", r, results["naive"][-1], results["fast"][-1])
    n, f = statistics.median(results["naive"]), statistics.median(results["fast"])
    print(f"images: {len(paths)}  torch threads: {torch.get_num_threads()}  workers: {args.workers}")
    print(f"naive one-at-a-time: {n:.1f} images/s")
    print(f"fast (stage):        {f:.1f} images/s")
    print(f"speed-up:            {f / n:.2f}x")
    cn, cf = statistics.median(cpu["naive"]), statistics.median(cpu["fast"])
    print(f"CPU s/image (all processes): naive {cn:.4f}, fast {cf:.4f} ({cn / cf:.2f}x less CPU)")
    print(f"estimate on 2 dedicated cores: naive {2 / cn:.1f} images/s, fast {2 / cf:.1f} images/s")


if __name__ == "__main__":
    main()
