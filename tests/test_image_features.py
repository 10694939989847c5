"""image_features: real EfficientNet-Lite0 on tiny images: order, failures, determinism, shards == one process."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import image_features
from pipeline.image_features import Params, run
from tagan.config import ParamsError, Runtime, from_dict
from tagan.errors import UserError
from tagan.models.backbones import Backbone, build_backbone
from tagan.tagging.features import extract_features, load_features, shard_bounds

SIZE = 64  # tiny network input keeps the real backbone fast


@pytest.fixture(scope="module")
def backbone() -> Iterator[Backbone]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_backbone("efficientnet_lite0", "cpu", image_size=SIZE)
    torch.set_num_threads(threads)  # later modules get the machine's threads back


def make_images(root: Path, n: int) -> list[Path]:
    """n small distinct images plus, at positions 2 and 5, a broken and an empty file."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"im{i}.png"
        if i == 2:
            p.write_text("not an image")
        elif i == 5:
            p.write_bytes(b"")
        else:
            Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), np.uint8)).save(p)
        paths.append(p)
    return paths


def write_items(path: Path, images: list[Path]) -> Path:
    rows = [{"id": f"id{i}", "path": str(p), "group": "g", "tags": ["x"], "split": "train", "split_image": "train"}
            for i, p in enumerate(images)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_backbone_shapes(backbone: Backbone) -> None:
    x = backbone.transform(Image.new("RGB", (100, 80), (200, 10, 10)))
    assert x.shape == (3, SIZE, SIZE)
    assert backbone(np.stack([x, x])).shape == (2, 1280) and backbone.dim == 1280


def test_pad_fit_keeps_the_whole_image_on_white() -> None:
    from tagan.models.backbones import pil_transform

    x = pil_transform(SIZE, [0.5] * 3, [0.5] * 3, "pad")(Image.new("RGB", (100, 50), (0, 0, 0)))
    assert x.shape == (3, SIZE, SIZE)
    assert np.allclose(x[:, 0, 0], 1.0) and np.allclose(x[:, SIZE // 2, 0], -1.0)


def test_extract_keeps_order_reports_failures_and_is_deterministic(
    tmp_path: Path, backbone: Backbone
) -> None:
    paths = make_images(tmp_path, 7)
    kw = {"batch_size": 3, "max_side": 96}
    a = list(extract_features(paths, backbone, workers=0, **kw))
    assert [e.path for e in a] == paths
    assert [e.reason is None for e in a] == [True, True, False, True, True, False, True]
    assert "not an image" in a[2][2] and "empty" in a[5][2]
    b = list(extract_features(iter(paths), backbone, workers=2, **kw))  # worker processes decode
    for (_, fa, _, _), (_, fb, _, _) in zip(a, b):
        assert (fa is None and fb is None) or np.array_equal(fa, fb)
    assert a[0][1].shape == (1280,) and a[0][1].dtype == np.float32


def test_shard_bounds_cover_everything_on_batch_boundaries() -> None:
    bounds = shard_bounds(103, 4, 8)
    assert bounds[0][0] == 0 and bounds[-1][1] == 103
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(a % 8 == 0 for a, _ in bounds)
    assert shard_bounds(2, 4, 8)[1:] == [(2, 2)] * 3  # more shards than batches: empty shards


def test_shards_merge_to_the_single_process_result_and_resume(tmp_path: Path, monkeypatch) -> None:
    items = write_items(tmp_path / "items.jsonl", make_images(tmp_path / "img", 11))
    cfg = Params(image_size=SIZE, batch_size=2, max_side=96, num_shards=1)
    rt = Runtime(device="cpu", num_threads=1, workers=0)
    one = run(cfg, rt, items, tmp_path / "one", tmp_path / "one.json", resume_dir=tmp_path / "r1")
    calls = []
    real = image_features.compute_shard
    monkeypatch.setattr(image_features, "compute_shard", lambda *a, **k: calls.append(1) or real(*a, **k))
    for shard in (2, 0):  # any order; the merge waits for all three
        run(
            cfg,
            rt,
            items,
            tmp_path / "sh",
            tmp_path / "sh.json",
            shard=shard,
            num_shards=3,
            resume_dir=tmp_path / "r2",
        )
    assert not (tmp_path / "sh" / "features.npz").exists()
    run(cfg, rt, items, tmp_path / "sh", tmp_path / "sh.json", num_shards=3, resume_dir=tmp_path / "r2")
    assert len(calls) == 3  # the last run computed only the missing shard 1, then merged
    ids1, f1 = load_features(tmp_path / "one" / "features.npz")
    ids3, f3 = load_features(tmp_path / "sh" / "features.npz")
    assert list(ids1) == list(ids3) == [f"id{i}" for i in range(11) if i not in (2, 5)]
    assert f1.shape == (9, 1280) and np.array_equal(f1, f3)
    skipped = [json.loads(line) for line in (tmp_path / "sh" / "skipped.jsonl").read_text().splitlines()]
    assert [s["id"] for s in skipped] == ["id2", "id5"] and all(s["reason"] and s["path"] for s in skipped)
    assert one["images"] == 9 and one["skipped"] == 2 and one["images_per_s"] > 0
    assert not (tmp_path / "r2").exists() or not any(
        (tmp_path / "r2").iterdir()
    )  # shards cleaned after merge


def test_bad_params_and_missing_weights_fail_clearly(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ParamsError, match="image_features.max_side"):
        from_dict(Params, {"image_size": 224, "max_side": 100}, "image_features")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UserError, match="not cached"):
        build_backbone("resnet18", "cpu")
    with pytest.raises(UserError, match="unknown backbone"):
        build_backbone("no_such_net", "cpu")
    with pytest.raises(UserError, match="dvc repro tags_data"):
        run(Params(), Runtime(), tmp_path / "missing.jsonl", tmp_path / "o", tmp_path / "m.json")


@pytest.mark.slow
def test_cli_shards_in_separate_processes_then_merge(tmp_path: Path) -> None:
    import subprocess
    import sys

    items = write_items(tmp_path / "items.jsonl", make_images(tmp_path / "img", 6))
    params = tmp_path / "params.yaml"
    params.write_text(
        "runtime: {device: cpu, num_threads: 1, workers: 0}\n"
        f"image_features: {{image_size: {SIZE}, batch_size: 2, max_side: 96, num_shards: 2}}\n"
    )
    root = Path(__file__).resolve().parents[1]
    base = [sys.executable, "-m", "pipeline.image_features", "--items", str(items), "--out", str(tmp_path / "f"),
            "--metrics", str(tmp_path / "m.json"), "--params", str(params)]  # fmt: skip
    env = {"TAGAN_RESUME_DIR": str(tmp_path / "resume"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}

    def cli(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            base + list(extra), cwd=root, env=env, capture_output=True, text=True, timeout=120
        )

    assert cli("--shard", "1", "--num-shards", "2").returncode == 0
    assert not (tmp_path / "f" / "features.npz").exists()
    assert cli("--shard", "0", "--num-shards", "2").returncode == 0  # the last shard merges
    ids, feats = load_features(tmp_path / "f" / "features.npz")
    assert list(ids) == ["id0", "id1", "id3", "id4"] and feats.shape == (4, 1280)
    bad = cli("--shard", "5", "--num-shards", "2")
    assert bad.returncode == 2 and "--shard must be in [0, 1]" in bad.stderr


KILLED_CONSUMER = """
import sys, time
from pathlib import Path
import numpy as np
from tagan.models.backbones import Backbone, pil_transform
from tagan.tagging.features import extract_features

net = Backbone("probe", 4, 32, pil_transform(32, [0.5] * 3, [0.5] * 3), None, "cpu", "onnxruntime",
               lambda x: np.zeros((len(x), 4), np.float32))
for _ in extract_features(sorted(Path(sys.argv[1]).iterdir()), net, batch_size=1, workers=2, max_side=64):
    print("decoding", flush=True)
    time.sleep(600)  # a slow consumer: the workers wait with batches decoded ahead
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_decode_workers_exit_when_the_main_process_is_killed(tmp_path: Path) -> None:
    """`kill -9` of `tagan tag` (or of a stage) leaves no decode worker behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    make_images(tmp_path / "img", 8)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CONSUMER, str(tmp_path / "img")], cwd=root,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "decoding\n"
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2, children  # the two decode workers
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def alive(pid: str) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"  # a zombie has exited (reparented, not yet reaped)

    deadline = time.monotonic() + 20
    while any(map(alive, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, children)), children


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the patched decoder reaches forked workers"
)
def test_a_dead_decode_worker_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that kills its process (a segfault in a codec, the OOM killer) stops the run with a UserError
    that says what happened and how to find the photo, not a BrokenProcessPool traceback."""
    import os

    from tagan.models.backbones import pil_transform
    from tagan.tagging import features

    real_load = features.load_image

    def crashing_load(path: Path, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if path.name == "im4.png":
            os._exit(139)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(features, "load_image", crashing_load)
    net = Backbone("probe", 4, 32, pil_transform(32, [0.5] * 3, [0.5] * 3), None, "cpu", "onnxruntime",
                   lambda x: np.zeros((len(x), 4), np.float32))  # fmt: skip
    with pytest.raises(UserError, match=r"decode worker died .*\(--workers 0\)"):
        list(extract_features(make_images(tmp_path, 8), net, batch_size=1, workers=2, max_side=64))
