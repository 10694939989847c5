"""Benchmark `tagan tag` and image_features in ONE run: today's code path vs this tree, side by side.

    python scripts/bench_cli.py                         # 10,000 photos; model from data/tagger, else synthetic
    python scripts/bench_cli.py --photos 2000 --sizes 500,2000

Photos are 640x480 JPEGs generated in a temp dir from scikit-learn's sample photos (random crops, flips,
colour jitter, noise). "Today" is `git archive --baseline REV` (torch runtime, the old JPEG draft) run from
its own source tree; "new" is this tree with its defaults (runtime auto = ONNX Runtime on a CPU). Measured:
image_features (the stage's extract_features, sides alternating block by block), the real CLI as a subprocess
(`cli.py tag FOLDER --format jsonl`) of each side on 1k and 10k photos (photos/s, CPU s per photo of the whole
process tree, peak RSS of the main process and PSS of main + decoding workers: flat from 1k to 10k means
memory does not grow with the folder), CPU per photo of decode, network and tagging, and the compute limit.
Torch / ONNX Runtime threads are left at their defaults (one per core), as users run it; the load average
before and after is printed, since the machine may be shared.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import cli  # noqa: E402
from tagan.photos.session import tag_features  # noqa: E402

log = logging.getLogger("bench_cli")


def synthetic_bundle(out: Path, vocab: int = 208, tag_dim: int = 200, seed: int = 0) -> Path:
    """A bundle with the paper preset's shapes and random weights (speed does not depend on the weights)."""
    import torch

    from tagan.files import write_json
    from tagan.models.tag_cgan import DataSizes, TagCGANConfig, build
    from tagan.tagging.index import TagIndex
    from tagan.utils import save_checkpoint

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


def run_cli_tree(tree: Path, model: Path, folder: Path, count: int, unique: list[Path], workers: int) -> dict:
    """Run `tree`'s CLI on `count` photos (hard links to the unique JPEGs); sample its process tree's memory."""
    import resource

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        link = folder / f"p{i:06d}.jpg"
        if not link.exists():
            os.link(unique[i % len(unique)], link)
    out = folder.parent / f"tags_{count}_{tree.name}.jsonl"
    cmd = [sys.executable, str(tree / "cli.py"), "tag", str(folder), "--model", str(model), "--format", "jsonl",
           "--output", str(out), "--quiet", "--workers", str(workers)]  # fmt: skip
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tree)
    peak = {"tree": 0, "main": 0}

    def sample() -> None:
        while proc.poll() is None:
            try:
                main = proc.memory_info().rss
                procs = [proc, *proc.children(recursive=True)]  # forked workers share pages: sum PSS, not RSS
                tree_pss = sum(p.memory_full_info().pss for p in procs)
            except psutil.Error:
                continue
            peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree_pss)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and its reaped workers
    cpu = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"cli failed ({proc.returncode}): {err.decode()[-2000:]}")
    lines = sum(1 for _ in out.open())
    return {"photos": lines, "wall_s": wall, "per_s": lines / wall, "main_mib": peak["main"] / 2**20,
            "tree_mib": peak["tree"] / 2**20, "cpu_per_photo": cpu / lines}  # fmt: skip


def tagging_cpu(model: Path, samples: int, n: int = 64) -> float:
    """CPU seconds per photo of tagging alone (GAN samples + FAISS decoding) from a feature vector."""
    args = tag_args(model, [Path("unused.jpg")], 4, 0, samples)
    # runtime auto, as the CLI: the tagger then runs on one torch thread (open_session)
    session = cli.open_session(args)
    feats = np.random.default_rng(0).normal(size=(n, 1280)).astype(np.float32)
    opts = cli.tag_options(args)
    tag_features(session, feats[0], opts)
    c0 = time.process_time()
    for f in feats:
        tag_features(session, f, opts)
    return (time.process_time() - c0) / n


def main() -> None:
    """Generate the photos, run every measurement side by side, print markdown tables."""
    from bench_features import (
        BASELINE,
        breakdown,
        checkout,
        loadavg,
        make_jpegs,
        print_features,
        side_by_side,
    )

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=ROOT / "data" / "tagger", help="bundle (default: data/tagger)"
    )
    ap.add_argument(
        "--baseline-model",
        help="the baseline CLI's bundle: a path, or `synthetic` (a paper-size bundle with random "
        "weights in the baseline's format, for bundles the baseline cannot read; default: --model)",
    )
    ap.add_argument("--photos", type=int, default=10_000, help="distinct 640x480 JPEGs generated")
    ap.add_argument("--sizes", default="1000,10000", help="folder sizes for the CLI runs (memory flat?)")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of today's code path")
    ap.add_argument("--blocks", type=int, default=4, help="old/new alternations for image_features")
    ap.add_argument(
        "--features-workers", type=int, default=2, help="image_features workers (runtime.workers)"
    )
    ap.add_argument("--workers", type=int, default=1, help="CLI decoding workers (its default)")
    ap.add_argument("--samples", type=int, default=100, help="GAN samples per photo (the paper: 100)")
    ap.add_argument("--sample", type=int, default=200, help="photos for the per-stage CPU breakdown")
    ap.add_argument("--skip-features", action="store_true", help="only the CLI measurements")
    ap.add_argument("--features-photos", type=int, default=0, help="image_features on the first N (0: all)")
    ap.add_argument(
        "--baseline-max", type=int, default=0, help="CLI sizes above N run the new side only (0: all)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    load0 = loadavg()
    with tempfile.TemporaryDirectory(prefix="tagan-bench-") as tmp:
        tmp_path = Path(tmp)
        model = args.model
        if not (model / "info.json").exists():
            log.warning("no bundle at %s: using a synthetic paper-size bundle (random weights)", model)
            model = synthetic_bundle(tmp_path / "tagger")
        log.info("writing %d 640x480 JPEGs", args.photos)
        paths = make_jpegs(tmp_path / "unique", args.photos)
        sides = {
            "today (torch)": (checkout(args.baseline, tmp_path / "baseline"), ""),
            "new (default)": (ROOT, "auto"),
        }
        models = {name: model for name in sides}
        if args.baseline_model == "synthetic":
            # the baseline cannot read a newer bundle: a paper-size one, built by the baseline's own code
            tree, out = sides["today (torch)"][0], tmp_path / "baseline_tagger"
            code = (
                "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/scripts']; import bench_cli; "
                "from pathlib import Path; bench_cli.synthetic_bundle(Path(sys.argv[2]))"
            )
            subprocess.run([sys.executable, "-c", code, str(tree), str(out)], cwd=tree, check=True)
            models["today (torch)"] = out
        elif args.baseline_model is not None:
            models["today (torch)"] = args.baseline_model
        features = None
        if not args.skip_features:
            subset = paths[: args.features_photos or len(paths)]
            log.info("image_features side by side on %d photos", len(subset))
            features = side_by_side(sides, subset, args.blocks, args.features_workers, tmp_path)
        load_mid = loadavg()
        cli_runs: dict[tuple[str, int], dict] = {}
        for count in [int(s) for s in args.sizes.split(",") if s.strip()]:
            for name, (tree, _) in sides.items():
                if args.baseline_max and count > args.baseline_max and name != "new (default)":
                    continue
                log.info("tagan tag: %s on %d photos", name, count)
                cli_runs[name, count] = run_cli_tree(tree, models[name], tmp_path / f"folder_{count}", count, paths,
                                                     args.workers)  # fmt: skip
        parts = breakdown(sides, paths[: args.sample], tmp_path)
        tag_cpu = tagging_cpu(model, args.samples)
    load1 = loadavg()
    print(f"\n## tagan benchmark: image_features on {len(subset) if features else 0} of {len(paths)} distinct 640x480 JPEGs, {os.cpu_count()} cores, "
          f"baseline {args.baseline}, load average (1/5/15 min) {load0} -> {load_mid} -> {load1}\n")  # fmt: skip
    if features:
        print_features(features, parts)
    print(
        f"\ntagging alone (GAN {args.samples} samples + FAISS decoding): {tag_cpu * 1000:.2f} CPU ms/photo\n"
    )
    print(
        "| `tagan tag` (subprocess) | photos | photos/s | x today | CPU ms/photo | peak main RSS MiB | "
        "peak PSS main+workers MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (name, count), m in cli_runs.items():
        base = cli_runs.get((next(iter(sides)), count), {}).get("per_s")
        ratio = f"{m['per_s'] / base:.2f}" if base else "-"
        print(f"| {name} | {m['photos']} | {m['per_s']:.1f} | {ratio} | "
              f"{m['cpu_per_photo'] * 1000:.1f} | {m['main_mib']:.0f} | {m['tree_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
