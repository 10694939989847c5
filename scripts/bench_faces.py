"""What the face detector costs `tagan tag`, side by side in one run: the default bundle (face words on) against a
`--no-faces` (the detector off), and `--method imagenet_names` (no GAN), on the same real photos.

    python scripts/bench_faces.py                  # 300 photos of data/photos (photo_eval's), 2 rounds
    python scripts/bench_faces.py --baseline OLD_TREE --baseline-model OLD_BUNDLE   # + another checkout's CLI

The photos are photo_eval's real photos (GCompris, Scratch, samples) re-encoded as JPEG in a temp dir. Each
round runs the three sides as subprocesses (`cli.py tag DIR --format jsonl`, start-up included) in a rotating
order; the median photos/s per side and the ratios are printed. The machine's load average is printed too.
With --baseline (a checkout of another commit, e.g. `git worktree add OLD_TREE REV`, and the bundle that commit
built), its default and `--no-faces` run in the same rounds, from their own tree (PYTHONPATH=OLD_TREE).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def photos(src: Path, out: Path, n: int) -> int:
    """Up to n of photo_eval's images as JPEG files in out."""
    files = sorted(p for p in (src / "images").iterdir() if p.is_file())[:n]
    for i, path in enumerate(files):
        with Image.open(path) as im:
            im.convert("RGB").save(out / f"{i:04d}.jpg", quality=90)
    return len(files)


def run(tree: Path, model: Path, folder: Path, *extra: str) -> float:
    cmd = [sys.executable, str(tree / "cli.py"), "tag", str(folder), "--model", str(model), *extra,
           "--format", "jsonl", "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=folder.parent).stdout
    seconds = time.perf_counter() - t0
    return len(out.splitlines()) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", type=Path, default=ROOT / "data/tagger")
    ap.add_argument("--source", type=Path, default=ROOT / "data/photos")
    ap.add_argument("--baseline", type=Path, help="another checkout of tagan (its cli.py and package)")
    ap.add_argument("--baseline-model", type=Path, help="the bundle the baseline's commit built")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        n = photos(args.source, folder, args.photos)
        sides = {
            "default (faces on)": (ROOT, args.model),
            "default --no-faces": (ROOT, args.model, "--no-faces"),
            "imagenet_names": (ROOT, args.model, "--method", "imagenet_names"),
        }
        if args.baseline:
            sides["baseline default"] = (args.baseline, args.baseline_model or args.model)
            sides["baseline --no-faces"] = (args.baseline, args.baseline_model or args.model, "--no-faces")
        speed: dict[str, list[float]] = {name: [] for name in sides}
        print(f"{n} photos; load average before: {os.getloadavg()[0]:.2f}")
        for r in range(args.rounds):
            names = list(sides)[r % len(sides) :] + list(sides)[: r % len(sides)]
            for name in names:
                speed[name].append(run(*sides[name][:2], folder, *sides[name][2:]))
                print(f"round {r}: {name}: {speed[name][-1]:.1f} photos/s", flush=True)
        median = {name: statistics.median(v) for name, v in speed.items()}
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        ref = "baseline --no-faces" if args.baseline else None
        print("| side | photos/s | x --no-faces | x imagenet_names |" + (f" x {ref} |" if ref else ""))
        for name, v in median.items():
            extra = f" {v / median[ref]:.2f} |" if ref else ""
            print(f"| {name} | {v:.1f} | {v / median['default --no-faces']:.2f} | {v / median['imagenet_names']:.2f} |"
                  + extra)  # fmt: skip


if __name__ == "__main__":
    main()
