"""Benchmark image_features side by side: today's code path (a git revision: torch, its decoder) vs this tree.

    python scripts/bench_features.py [--photos 10000] [--baseline ac9919f] [--blocks 4]

Both sides run `tagan.tagging.features.extract_features` exactly as the stage does (batch 4, decode
workers, max_side 320, torch threads left at their default) in a subprocess of their own source tree: the
baseline is `git archive REV` of the code before the ONNX runtime and the longer-side JPEG draft, so "today"
is today's code, not a flag emulating it. The photos are split in blocks and the sides alternate block by
block (old, new, old, new, ...) so that load from other processes hits both alike. Reported per side: images/s
(wall), CPU seconds per image (the process and its decoding workers), and a per-stage CPU breakdown on a
sample: decode (load_image + transform), network, and decode with simplejpeg for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "ac9919f"  # the commit before the CPU runtime and the decoder change (today's code path)

FEATURES_DRIVER = r"""
import json, resource, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["tree"])
import torch
from tagan.tagging.features import extract_features
from tagan.models.backbones import build_backbone

def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

paths = open(cfg["list"], encoding="utf-8").read().splitlines()
kw = {"runtime": cfg["runtime"]} if cfg["runtime"] else {}
t0 = time.perf_counter()
backbone = build_backbone("efficientnet_lite0", "cpu", image_size=224, **kw)
build = time.perf_counter() - t0
run = lambda ps: sum(e.feature is not None for e in extract_features(ps, backbone, batch_size=4, workers=cfg["workers"], max_side=320))
run(paths[:8])  # warm-up: allocator, oneDNN / ORT kernels
c0, t0 = cpu(), time.perf_counter()
n = run(paths)
print(json.dumps({"images": n, "wall": time.perf_counter() - t0, "cpu": cpu() - c0, "build_s": build,
                  "threads": torch.get_num_threads(), "runtime": getattr(backbone, "runtime", "torch")}))
"""

STAGES_DRIVER = r"""
import json, sys, time
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["tree"])
import numpy as np, torch
from PIL import Image
from tagan.models.backbones import build_backbone
from tagan.readers.images import load_image

paths = open(cfg["list"], encoding="utf-8").read().splitlines()
kw = {"runtime": cfg["runtime"]} if cfg["runtime"] else {}
backbone = build_backbone("efficientnet_lite0", "cpu", image_size=224, **kw)
out = {}

def timed(name, fn):
    fn(paths[:4])
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn(paths)
    out[name] = {"cpu_per_image": (time.process_time() - c0) / len(paths), "wall_per_image": (time.perf_counter() - t0) / len(paths)}
    return result

xs = timed("decode", lambda ps: [backbone.transform(load_image(p, 320)) for p in ps])
stack = torch.stack if isinstance(xs[0], torch.Tensor) else np.stack  # older trees: torch tensors
batches = [stack(xs[i:i + 4]) for i in range(0, len(xs), 4)]
timed("network", lambda ps: [backbone(b) for b in batches[: max(1, len(ps) // 4)]])
out["network"] = {k: v * len(paths) / (4 * max(1, len(paths) // 4)) for k, v in out["network"].items()}
if cfg.get("simplejpeg"):
    import simplejpeg
    def sj(ps):
        res = []
        for p in ps:
            data = open(p, "rb").read()
            w, h = simplejpeg.decode_jpeg_header(data)[:2]
            s = max(w, h) / 320
            a = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=int(w / s), min_height=int(h / s))
            im = Image.fromarray(a)
            if max(im.size) > 320:
                im.thumbnail((320, 320), Image.Resampling.BILINEAR, reducing_gap=2.0)
            res.append(backbone.transform(im))
        return res
    timed("decode_simplejpeg", sj)
if cfg.get("flops"):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        backbone.net(torch.zeros(1, 3, 224, 224))
    out["flops_per_image"] = fc.get_total_flops()
    a = torch.randn(2048, 2048)
    torch.mm(a, a)
    t0 = time.perf_counter()
    for _ in range(10):
        torch.mm(a, a)
    out["peak_gflops"] = 10 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9
out["threads"] = torch.get_num_threads()
print(json.dumps(out))
"""


def checkout(rev: str, dest: Path) -> Path:
    """The source tree of git revision `rev` (git archive), for running today's code side by side."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_driver(code: str, cfg: dict) -> dict:
    """Run a driver in a fresh interpreter inside cfg['tree']; its last stdout line is its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True,
                          cwd=cfg["tree"], env=env)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"driver failed in {cfg['tree']}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_list(paths: list[Path], path: Path) -> Path:
    path.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return path


def side_by_side(
    sides: dict[str, tuple[Path, str]], paths: list[Path], blocks: int, workers: int, tmp: Path
) -> dict:
    """image_features over `paths` for every side, alternating sides block by block; summed per side."""
    totals = {name: {"images": 0, "wall": 0.0, "cpu": 0.0} for name in sides}
    size = -(-len(paths) // blocks)
    for b in range(blocks):
        block = write_list(paths[b * size : (b + 1) * size], tmp / f"block{b}.txt")
        for name, (tree, runtime) in sides.items():
            got = run_driver(
                FEATURES_DRIVER,
                {"tree": str(tree), "runtime": runtime, "list": str(block), "workers": workers},
            )
            for k in ("images", "wall", "cpu"):
                totals[name][k] += got[k]
            totals[name]["threads"], totals[name]["runtime"] = got["threads"], got["runtime"]
            print(f"  block {b}: {name}: {got['images'] / got['wall']:.1f} images/s, "
                  f"{got['cpu'] / got['images'] * 1000:.1f} CPU ms/image", file=sys.stderr, flush=True)  # fmt: skip
    for t in totals.values():
        t["per_s"], t["cpu_per_image"] = t["images"] / t["wall"], t["cpu"] / t["images"]
    return totals


def breakdown(sides: dict[str, tuple[Path, str]], paths: list[Path], tmp: Path) -> dict:
    """Per-stage CPU seconds per image (decode, network) of every side on a sample, plus FLOPs and peak."""
    sample = write_list(paths, tmp / "sample.txt")
    out = {}
    for i, (name, (tree, runtime)) in enumerate(sides.items()):
        last = i == len(sides) - 1
        cfg = {"tree": str(tree), "runtime": runtime, "list": str(sample), "simplejpeg": last, "flops": last}
        out[name] = run_driver(STAGES_DRIVER, cfg)
    return out


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=10_000, help="640x480 JPEGs generated for the run")
    ap.add_argument("--baseline", default=BASELINE, help="git revision of today's code path")
    ap.add_argument("--blocks", type=int, default=4, help="alternations of old and new")
    ap.add_argument("--workers", type=int, default=2, help="decoding workers (params runtime.workers)")
    ap.add_argument("--sample", type=int, default=200, help="photos for the per-stage breakdown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tagan-bench-features-") as tmp:
        tmp_path = Path(tmp)
        paths = make_jpegs(tmp_path / "photos", args.photos)
        sides = {
            "today (torch)": (checkout(args.baseline, tmp_path / "baseline"), ""),
            "new (default)": (ROOT, "auto"),
        }
        load0 = loadavg()
        res = side_by_side(sides, paths, args.blocks, args.workers, tmp_path)
        parts = breakdown(sides, paths[: args.sample], tmp_path)
    print(
        f"\n### image_features, {args.photos} 640x480 JPEGs, {os.cpu_count()} cores, load {load0} -> {loadavg()}\n"
    )
    print_features(res, parts)


def print_features(res: dict, parts: dict) -> None:
    """Markdown tables: side-by-side throughput, and the per-stage breakdown with the compute limit."""
    base = next(iter(res.values()))["per_s"]
    print("| image_features | runtime | threads | images/s | x today | CPU ms/image |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in res.items():
        print(f"| {name} | {r['runtime']} | {r['threads']} | {r['per_s']:.1f} | {r['per_s'] / base:.2f} | "
              f"{r['cpu_per_image'] * 1000:.1f} |")  # fmt: skip
    print("\n| CPU ms per photo | decode | decode (simplejpeg) | network |")
    print("|---|---:|---:|---:|")
    for name, p in parts.items():
        sj = p.get("decode_simplejpeg", {}).get("cpu_per_image")
        print(f"| {name} | {p['decode']['cpu_per_image'] * 1000:.2f} | {f'{sj * 1000:.2f}' if sj else '-'} | "
              f"{p['network']['cpu_per_image'] * 1000:.2f} |")  # fmt: skip
    last = list(parts.values())[-1]
    if "flops_per_image" in last:
        gflop = last["flops_per_image"] / 1e9
        print(f"\ncompute limit: {gflop:.3f} GFLOP per image (EfficientNet-Lite0, 224 px); measured peak "
              f"{last['peak_gflops']:.0f} GFLOP/s (fp32 2048^2 matmul, {last['threads']} threads) -> at most "
              f"{last['peak_gflops'] / gflop:.0f} images/s; the network stage reaches "
              f"{gflop / last['network']['wall_per_image']:.1f} GFLOP/s")  # fmt: skip


if __name__ == "__main__":
    main()
