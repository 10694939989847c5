"""Benchmark the tagger CLI end to end: batched pipeline vs a naive one-photo loop, and peak memory vs photo count.

    python scripts/bench_cli.py                      # model from data/tagger (else a synthetic paper-size bundle)
    python scripts/bench_cli.py --photos 200 --sizes 1000

Photos are 640x480 JPEGs generated in a temp dir from scikit-learn's sample photos (random crops, flips,
colour jitter, noise). Throughput covers decode, features, GAN samples, FAISS decoding and output; the two
loops run side by side in one process over the same photos. Memory runs the real CLI in a subprocess and
samples the main process's RSS and the PSS of its whole process tree (main + decoding workers). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cli  # noqa: E402
from tagan.readers.images import load_image  # noqa: E402

log = logging.getLogger("bench_cli")


def make_jpegs(out: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` distinct 640x480 JPEGs (quality 90) cut from scikit-learn's sample photos."""
    from sklearn.datasets import load_sample_images

    sources = [
        Image.fromarray(a).resize((720, 480), Image.Resampling.BILINEAR) for a in load_sample_images().images
    ]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        x0 = int(rng.integers(0, 81))
        a = np.asarray(
            sources[i % len(sources)].crop((x0, 0, x0 + 640, 480)), dtype=np.float32
        )  # (480, 640, 3)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        a = a * rng.uniform(0.8, 1.2, size=3) + rng.normal(0, 4, size=a.shape)
        path = out / f"photo_{i:05d}.jpg"
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def synthetic_bundle(out: Path, vocab: int = 208, tag_dim: int = 200, seed: int = 0) -> Path:
    """A bundle with the paper preset's shapes and random weights (speed does not depend on the weights)."""
    import torch

    from tagan.models.tag_cgan import DataSizes, TagCGANConfig, build
    from tagan.tagging import TagIndex
    from tagan.utils import save_checkpoint, write_json

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    words = [f"tag{i:03d}" for i in range(vocab)]
    TagIndex(words, rng.normal(size=(vocab, tag_dim)).astype(np.float32)).save(out / "index")
    cfg, sizes = TagCGANConfig(), DataSizes(feature_dim=1280, tag_dim=tag_dim)
    g, _ = build(cfg, sizes)
    save_checkpoint(
        out / "cgan_paper.pt",
        {"model": cfg.to_dict(), "sizes": sizes.to_dict()},
        {"generator": g.state_dict()},
    )
    write_json(out / "info.json", {
        "dataset": "synthetic", "backbone": "efficientnet_lite0", "feature_dim": 1280, "vocabulary_size": vocab,
        "methods": ["cgan_paper"], "aliases": {"cgan": "cgan_paper"},
        "decoding": {"cgan_paper": {"neighbors": 20, "weighted": False}},
    })  # fmt: skip
    return out


def tag_args(
    model: Path, paths: list[Path], batch_size: int, workers: int, samples: int
) -> argparse.Namespace:
    """The CLI's own parsed arguments for `tag` over `paths` (so the benchmark runs exactly what users run)."""
    argv = ["tag", "--model", str(model), "--batch-size", str(batch_size), "--workers", str(workers)]
    args = cli.build_parser().parse_args([*argv, "--samples", str(samples), "--quiet", *map(str, paths)])
    return args


def batched(args: argparse.Namespace, session: cli.Session) -> int:
    """The CLI's pipeline: streamed paths, DataLoader decoding workers, batched backbone, output."""
    with open(os.devnull, "w") as sink:
        writer = cli.Writer(sink, "jsonl")
        n = sum(1 for rec in cli.tag_stream(args, session) if writer.write(rec) is None)
        writer.close()
    return n


def naive(args: argparse.Namespace, session: cli.Session, paths: list[Path], max_side: int) -> int:
    """One photo at a time through the same functions: decode, transform, backbone, tag, output."""
    with open(os.devnull, "w") as sink:
        writer = cli.Writer(sink, "jsonl")
        for path in paths:
            x = session.backbone.transform(load_image(path, max_side))[None]  # (1, 3, S, S)
            feature = session.backbone(x).numpy()[0]  # (F,)
            writer.write(cli.Record(path, tags=cli.tag_features(session, feature, args)))
        writer.close()
    return len(paths)


def throughput(
    model: Path, paths: list[Path], *, batch_size: int, workers: int, samples: int
) -> dict[str, float]:
    """Photos/s of the batched pipeline and of the naive loop over the same photos, side by side."""
    args = tag_args(model, paths, batch_size, workers, samples)
    session = cli.open_session(args)
    max_side = 320  # image_features.Params.max_side, what extract_features uses by default
    warm = paths[: min(8, len(paths))]
    naive(args, session, warm, max_side)
    t0 = time.perf_counter()
    n = naive(args, session, paths, max_side)
    naive_s = time.perf_counter() - t0
    batched(tag_args(model, warm, batch_size, workers, samples), session)
    t0 = time.perf_counter()
    m = batched(args, session)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = np.random.default_rng(0).normal(size=(32, 1280)).astype(np.float32)
    for f in feats:
        cli.tag_features(session, f, args)
    tag_ms = (time.perf_counter() - t0) / len(feats) * 1000
    return {
        "photos": n,
        "naive_per_s": n / naive_s,
        "batched_per_s": m / batched_s,
        "tag_ms_per_photo": tag_ms,
    }


def peak_memory(model: Path, folder: Path, count: int, unique: list[Path], workers: int) -> dict[str, float]:
    """Run the real CLI on `count` photos (hard links to the unique JPEGs) and sample its process tree's RSS."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        link = folder / f"p{i:06d}.jpg"
        if not link.exists():
            os.link(unique[i % len(unique)], link)
    out = folder.parent / f"tags_{count}.jsonl"
    cmd = [sys.executable, str(ROOT / "cli.py"), "tag", str(folder), "--model", str(model), "--format", "jsonl",
           "--output", str(out), "--quiet", "--workers", str(workers)]  # fmt: skip
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = {"tree": 0, "main": 0}

    def sample() -> None:
        while proc.poll() is None:
            try:
                main = proc.memory_info().rss
                procs = [proc, *proc.children(recursive=True)]  # forked workers share pages: sum PSS, not RSS
                tree = sum(p.memory_full_info().pss for p in procs)
            except psutil.Error:
                continue
            peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cli failed ({proc.returncode}): {err.decode()[-2000:]}")
    lines = sum(1 for _ in out.open())
    return {"photos": lines, "wall_s": wall, "per_s": lines / wall, "main_mib": peak["main"] / 2**20,
            "tree_mib": peak["tree"] / 2**20}  # fmt: skip


def main() -> None:
    """Parse options, run both measurements, print a markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=ROOT / "data" / "tagger", help="bundle (default: data/tagger)"
    )
    ap.add_argument("--photos", type=int, default=320, help="photos for the side-by-side throughput run")
    ap.add_argument("--sizes", default="1000,10000", help="photo counts for the memory runs ('' to skip)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--samples", type=int, default=100, help="GAN samples per photo (the paper: 100)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="tagan-bench-") as tmp:
        tmp_path = Path(tmp)
        model = args.model
        if not (model / "info.json").exists():
            log.warning("no bundle at %s: using a synthetic paper-size bundle (random weights)", model)
            model = synthetic_bundle(tmp_path / "tagger")
        log.info("writing %d 640x480 JPEGs", args.photos)
        paths = make_jpegs(tmp_path / "unique", args.photos)
        speed = throughput(
            model, paths, batch_size=args.batch_size, workers=args.workers, samples=args.samples
        )
        mem = {}
        for count in [int(s) for s in args.sizes.split(",") if s.strip()]:
            log.info("memory run: %d photos", count)
            mem[count] = peak_memory(model, tmp_path / f"folder_{count}", count, paths, args.workers)
    cores = os.cpu_count()
    print(
        f"\n### tagan tag: 640x480 JPEGs, {cores} CPU cores, {args.samples} GAN samples/photo, model {model.name}\n"
    )
    print("| measurement | photos | photos/s | notes |")
    print("|---|---:|---:|---|")
    print(
        f"| naive loop (one photo at a time) | {speed['photos']} | {speed['naive_per_s']:.1f} | same functions |"
    )
    print(
        f"| CLI pipeline (batch {args.batch_size}, {args.workers} workers) | {speed['photos']} | "
        f"{speed['batched_per_s']:.1f} | {speed['batched_per_s'] / speed['naive_per_s']:.2f}x the naive loop |"
    )
    print(
        f"| GAN sampling + FAISS decoding alone | 32 | {1000 / speed['tag_ms_per_photo']:.1f} | "
        f"{speed['tag_ms_per_photo']:.1f} ms/photo |"
    )
    for count, m in mem.items():
        print(
            f"| `tagan tag` subprocess, {count} photos | {m['photos']} | {m['per_s']:.1f} | peak "
            f"main RSS {m['main_mib']:.0f} MiB, PSS of main + workers {m['tree_mib']:.0f} MiB; wall {m['wall_s']:.0f} s |"
        )


if __name__ == "__main__":
    main()
