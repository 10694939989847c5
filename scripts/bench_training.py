"""Training speed of the GAN trainer against the code before it (commit 7317e94), same machine, one run.

For each preset (mnist_cgan paper and strong, dcgan, tag_cgan strong) the real stage `run` of each
version trains for a few hundred steps in its own subprocess (the old one with a checkout of the old
commit on PYTHONPATH), old and new interleaved, repeated. Only the training loop is timed: from the
end of the resume-file lookup (just before the first step) to the end of the last step. Reported:
wall steps/s and CPU-seconds per step (the machine is shared; CPU time is the steadier number), the
old/new ratios, and whether old and new end with bit-identical weights (sha256 of G's and D's state
dicts after the same steps from the same seed).

    python -m pipeline.mnist_data --out data/mnist/mnist.npz --metrics /tmp/m.json   # real MNIST
    python scripts/bench_training.py --repeats 3 --json reports/bench_training.json

The tag CGAN trains on synthetic features and tag vectors of the real shapes (2512 images, 1280-d
features, 155 words, 200-d vectors). Threads: 1 (OMP_NUM_THREADS=1, runtime num_threads 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "7317e94"
PRESETS = {  # preset -> (stage, params section, default steps)
    "mnist_cgan.paper": ("mnist_cgan", "mnist_cgan.paper", 200),
    "mnist_cgan.strong": ("mnist_cgan", "mnist_cgan.strong", 200),
    "dcgan": ("dcgan", "dcgan", 80),
    "tag_cgan.strong": ("tag_cgan", "tag_cgan.strong", 300),
    "tag_cgan.paper": (
        "tag_cgan",
        "tag_cgan.paper",
        100,
    ),  # not bit-identical: its bce is now BCE-with-logits
}


class _Stop(Exception):
    """Raised once training ended: the stage's evaluation is not part of the benchmark."""


def state_digest(*state_dicts: dict[str, Any]) -> str:
    """sha256 over names and bytes of every tensor (equal digests = bit-identical weights and buffers)."""
    h = hashlib.sha256()
    for sd in state_dicts:
        for name in sorted(sd):
            h.update(name.encode())
            h.update(sd[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- data


def synthetic_tag_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """items.jsonl, vocab.json, features.npz and a tag index with the real data's shapes."""
    import numpy as np

    from tagan.tagging.index import TagIndex

    rng = np.random.default_rng(seed)
    words = [f"tag{i:03d}" for i in range(155)]
    n, groups = 2512, 145
    items, feats = [], []
    for i in range(n):
        group = i % groups
        split = "train" if group < 100 else "val" if group < 122 else "test"
        tags = sorted(set(rng.choice(words, size=int(rng.integers(1, 5))).tolist()))
        items.append({"id": f"img{i}", "path": f"/nonexistent/{i}.png", "group": f"g{group}", "tags": tags,
                      "split": split, "split_image": split})  # fmt: skip
        feats.append(np.abs(rng.normal(size=1280)))
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        k: root / f
        for k, f in (("items", "items.jsonl"), ("vocab", "vocab.json"), ("features", "features.npz"))
    }
    paths["items"].write_text("".join(json.dumps(it) + "\n" for it in items))
    counts = {w: sum(w in it["tags"] for it in items if it["split"] == "train") for w in words}
    paths["vocab"].write_text(json.dumps({"tags": words, "train_counts": counts}))
    np.savez(paths["features"], ids=np.array([it["id"] for it in items]),
             features=np.array(feats, dtype=np.float32), backbone=np.array("synthetic"))  # fmt: skip
    TagIndex(words, rng.normal(size=(155, 200)).astype(np.float32)).save(root / "emb")
    paths["emb"] = root / "emb"
    return paths


# ---------------------------------------------------------------------------------------------- worker


def worker(version: str, preset: str, steps: int, mnist: Path, tags: Path, params: Path) -> dict[str, Any]:
    """Run one version's real stage for `steps` steps (no selection, no resume files); time the loop.

    version: old | new | new-bf16 (the new trainer with train.precision bf16)."""
    import torch

    torch.set_num_threads(1)
    stage, section, _ = PRESETS[preset]
    if version == "old":
        from pipeline import config, training  # the old commit's pipeline package (PYTHONPATH)

        module = __import__(f"pipeline.{stage}", fromlist=["run"])
        flat = {"steps": steps, "checkpoint_every": 0}
        if stage != "dcgan":
            flat["select_every"] = 0
        cfg = dataclasses.replace(config.load(module.Params, section, params), **flat)
    else:
        from tagan import config, gan, training

        module = __import__(f"pipeline.{stage}", fromlist=["run"])
        cfg = config.load(module.Params, section, params)
        precision = "bf16" if version == "new-bf16" else "fp32"
        train = dataclasses.replace(
            cfg.train, steps=steps, select_every=0, checkpoint_every=0, precision=precision
        )
        cfg = dataclasses.replace(cfg, train=train)
    clock: dict[str, float] = {}
    captured: dict[str, Any] = {}

    def start(load: Any) -> Any:
        def wrapped(self: Any, objects: Any) -> Any:
            out = load(self, objects)
            clock["wall"], clock["cpu"] = time.perf_counter(), time.process_time()
            return out

        return wrapped

    def stop() -> None:
        clock["wall"], clock["cpu"] = time.perf_counter() - clock["wall"], time.process_time() - clock["cpu"]

    training.Checkpointer.load = start(training.Checkpointer.load)
    if version != "old":
        fit = gan.fit

        def fit_and_stop(*args: Any, **kwargs: Any) -> Any:
            fitted = fit(*args, **kwargs)
            stop()
            captured["g"], captured["d"] = fitted.g.state_dict(), fitted.d.state_dict()
            raise _Stop

        gan.fit = fit_and_stop
    elif stage == "tag_cgan":

        def save_and_stop(path: Any, config: Any, state_dict: dict[str, Any], **extra: Any) -> None:
            stop()
            captured["g"], captured["d"] = state_dict["generator"], state_dict["discriminator"]
            raise _Stop

        module.save_checkpoint = save_and_stop
    else:
        train = module.train

        def train_and_stop(*args: Any, **kwargs: Any) -> Any:
            g, d, *_ = train(*args, **kwargs)
            stop()
            captured["g"], captured["d"] = g.state_dict(), d.state_dict()
            raise _Stop

        module.train = train_and_stop

    runtime = config.Runtime(device="cpu", num_threads=1)
    out = Path.cwd()  # run_worker's temp dir
    clf = out / "classifier.pt"
    clf.write_bytes(b"")  # the stages check that it exists before training; evaluation never runs
    try:
        if stage == "mnist_cgan":
            module.run(cfg, runtime, mnist, clf, *(out / f for f in ("m.pt", "m.json", "l.csv", "s.png")))
        elif stage == "dcgan":
            data = (mnist, clf) if version == "old" else ("mnist", mnist, clf)  # new: the dataset comes first
            module.run(cfg, runtime, *data, *(out / f for f in ("m.pt", "m.json", "l.csv", "s.png", "w.png")))
        else:
            module.run(cfg, runtime, preset.split(".")[1], tags / "items.jsonl", tags / "vocab.json", tags / "features.npz",
                       tags / "emb", out / "m.pt", out / "l.csv")  # fmt: skip
    except _Stop:
        pass
    return {
        "steps": steps,
        **clock,
        "digest_g": state_digest(captured["g"]),
        "digest_d": state_digest(captured["d"]),
    }


# ---------------------------------------------------------------------------------------------- driver


def old_checkout(rev: str, root: Path) -> Path:
    """The old commit's tree in `root` (git archive: no worktree to clean up)."""
    root.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def run_worker(version: str, code: Path, preset: str, steps: int, mnist: Path, tags: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="bench_") as cwd:
        env["TAGAN_RESUME_DIR"] = str(Path(cwd) / ".resume")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", version, "--preset", preset,
               "--steps", str(steps), "--mnist", str(mnist), "--tags", str(tags),
               "--params", str(code / "params.yaml")]  # fmt: skip
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{version} {preset} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="old/new pairs per preset (order alternates)")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS)[:4], choices=list(PRESETS))
    ap.add_argument("--steps", type=int, help="steps per run (default: per preset, a few hundred)")
    ap.add_argument("--old-rev", default=OLD_REV)
    ap.add_argument("--mnist", type=Path, default=ROOT / "data/mnist/mnist.npz")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--bf16", action="store_true", help="also time the new trainer with train.precision bf16")
    ap.add_argument("--worker", choices=["old", "new", "new-bf16"], help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--tags", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.preset, args.steps, args.mnist, args.tags, args.params)))
        return
    if not args.mnist.exists():
        sys.exit(
            f"{args.mnist} not found: python -m pipeline.mnist_data --out {args.mnist} --metrics /tmp/m.json"
        )
    sys.path.insert(0, str(ROOT))
    versions = ["old", "new", "new-bf16"] if args.bf16 else ["old", "new"]
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        old = old_checkout(args.old_rev, Path(tmp) / "old")
        tags = Path(tmp) / "tags"
        synthetic_tag_data(tags)
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            p: {v: [] for v in versions} for p in args.presets
        }
        for rep in range(args.repeats):
            for preset in args.presets:
                steps = args.steps or PRESETS[preset][2]
                for version in versions if rep % 2 == 0 else versions[::-1]:  # alternate who goes first
                    r = run_worker(
                        version, old if version == "old" else ROOT, preset, steps, args.mnist, tags
                    )
                    results[preset][version].append(r)
                    print(f"repeat {rep + 1} {preset:18} {version}: {r['steps'] / r['wall']:7.2f} steps/s, "
                          f"{r['cpu'] / r['steps'] * 1000:7.1f} CPU-ms/step", file=sys.stderr, flush=True)  # fmt: skip

    rows = []
    for preset, by in results.items():
        med = {
            v: {
                "steps_per_s": statistics.median(r["steps"] / r["wall"] for r in runs),
                "cpu_s_per_step": statistics.median(r["cpu"] / r["steps"] for r in runs),
            }
            for v, runs in by.items()
        }
        for version in versions[1:]:
            same = all(
                (o["digest_g"], o["digest_d"]) == (n["digest_g"], n["digest_d"])
                for o, n in zip(by["old"], by[version])
            )
            rows.append({
                "preset": preset if version == "new" else f"{preset} ({version})",
                "steps": by[version][0]["steps"],
                "old_steps_per_s": med["old"]["steps_per_s"],
                "new_steps_per_s": med[version]["steps_per_s"],
                "wall_speedup": med[version]["steps_per_s"] / med["old"]["steps_per_s"],
                "old_cpu_ms_per_step": 1000 * med["old"]["cpu_s_per_step"],
                "new_cpu_ms_per_step": 1000 * med[version]["cpu_s_per_step"],
                "cpu_speedup": med["old"]["cpu_s_per_step"] / med[version]["cpu_s_per_step"],
                "bit_identical": same,
            })  # fmt: skip
    print(f"\nmedians of {args.repeats} interleaved runs each, 1 thread, old = {args.old_rev}\n")
    print("| preset | steps | old steps/s | new steps/s | wall speed-up | old CPU ms/step | new CPU ms/step "
          "| CPU speed-up | G and D bit-identical |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['steps']} | {r['old_steps_per_s']:.2f} | {r['new_steps_per_s']:.2f} | "
              f"{r['wall_speedup']:.2f}x | {r['old_cpu_ms_per_step']:.1f} | {r['new_cpu_ms_per_step']:.1f} | "
              f"{r['cpu_speedup']:.2f}x | {'yes' if r['bit_identical'] else 'no'} |")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"old_rev": args.old_rev, "rows": rows, "runs": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
