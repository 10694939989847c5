"""The DVC pipeline end to end: deps match imports, real `dvc repro` on tiny params, push/pull, experiments."""

from __future__ import annotations

import ast
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
COPY_SKIP = {".git", ".venv", "data", "metrics", "plots", "reports", ".resume", ".cache", "dvc.lock",
             "__pycache__", ".pytest_cache", ".ruff_cache", "cache", "tmp"}  # fmt: skip


# --- static: every stage's deps list the modules it imports -----------------------------------


def stages(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """dvc.yaml stages with `foreach` expanded (name@item), as DVC names them."""
    out: dict[str, dict[str, Any]] = {}
    for name, stage in yaml.safe_load((root / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        for item in stage["foreach"]:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            out[f"{name}@{item}"] = yaml.safe_load(text)
    return out


PACKAGES = ("pipeline", "tagan")  # the stages and the library: their files are code deps


def _module_file(name: str, root: Path) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py (or the package's __init__.py); None outside the repo."""
    base = root / Path(*name.split("."))
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    return None


def _is_code(path: Path) -> bool:
    """False for a package __init__.py that holds only its docstring (nothing that could change a result)."""
    body = ast.parse(path.read_text()).body
    return path.name != "__init__.py" or any(not isinstance(n, ast.Expr) for n in body)


def import_closure(module: str, root: Path = ROOT) -> set[str]:
    """Repo-relative paths of every pipeline/tagan module `module` imports, transitively (itself included).

    Importing a.b.c runs a/__init__.py and a/b/__init__.py too: a package's __init__ counts when it holds code.
    """
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # the parent packages
        path = _module_file(name, root)
        if path is None or str(path.relative_to(root)) in seen:
            continue
        seen.add(str(path.relative_to(root)))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]  # `from pipeline import x`
    return {p for p in seen if _is_code(root / p)}


def stage_modules(stage: dict[str, Any]) -> set[str]:
    """Files a stage's command imports, from its `python -m pipeline.<module>`."""
    words = stage["cmd"].split()
    module = words[words.index("-m") + 1]
    return import_closure(module)


def test_every_stage_lists_exactly_the_modules_it_imports() -> None:
    """Imports anywhere in a module count (function-level ones too): a stale result is worse than a re-run."""
    problems = []
    for name, stage in stages().items():
        imported, deps = stage_modules(stage), set(stage.get("deps", []))
        code_deps = {d for d in deps if d.split("/")[0] in PACKAGES and d.endswith(".py")}
        if imported - deps:
            problems.append(f"{name}: add {sorted(imported - deps)} to deps (the stage imports them)")
        if code_deps - imported:
            problems.append(f"{name}: drop {sorted(code_deps - imported)} from deps (never imported)")
    assert not problems, "dvc.yaml:\n" + "\n".join(problems)


def test_stage_deps_and_params_exist() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages().items():
        for dep in stage.get("deps", []):
            if dep.split("/")[0] in PACKAGES:
                assert (ROOT / dep).exists(), f"dvc.yaml stage {name}: dep {dep} does not exist"
        for section in stage.get("params", []):
            node = params
            for part in str(section).split("."):
                assert part in node, f"dvc.yaml stage {name}: params section {section} not in params.yaml"
                node = node[part]


# --- real dvc in a copy of the repository ------------------------------------------------------


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip


def sh(cwd: Path, *cmd: str, ok: bool = True, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run a command in the repo copy; fail with its output unless it exits as expected."""
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def copy_repo(dst: Path) -> Path:
    """The working tree without venv, data, caches and outputs, as a fresh git + DVC repo."""
    shutil.copytree(ROOT, dst, ignore=lambda d, names: [n for n in names if n in COPY_SKIP])
    for sub in ("metrics", "plots", "reports"):
        (dst / sub).mkdir(exist_ok=True)
    sh(dst, "git", "init", "-q")
    sh(dst, "git", "add", "-A")
    sh(dst, "git", "commit", "-qm", "copy")
    return dst


def set_params(repo: Path, updates: dict[str, dict[str, Any]]) -> None:
    """Merge nested `updates` into the copy's params.yaml."""
    data = yaml.safe_load((repo / "params.yaml").read_text())

    def merge(node: dict[str, Any], upd: dict[str, Any]) -> None:
        for k, v in upd.items():
            if isinstance(v, dict) and isinstance(node.get(k), dict):
                merge(node[k], v)
            else:
                node[k] = v

    merge(data, updates)
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


TINY: dict[str, dict[str, Any]] = {
    "runtime": {"device": "cpu", "num_threads": 1, "workers": 0},
    "mnist_data": {"val_size": 1000},
    "mnist_classifier": {"channels": [4, 8], "hidden": 16, "epochs": 1, "batch_size": 64, "train_limit": 256,
                         "log_every": 1, "checkpoint_every": 0},
    "tags_data": {"source": "folder", "min_count": 2, "max_per_group": 0, "fractions": [0.6, 0.2, 0.2],
                  "split_by": "image"},
    "image_features": {"image_size": 64, "max_side": 64, "batch_size": 16, "num_shards": 2},
    "tag_embeddings": {"dim": 8, "window": 5, "epochs": 5},
    "tag_cgan": {
        preset: {"model": {"noise_dim": 4, "g_noise_hidden": 8, "g_cond_hidden": 8, "d_tag_hidden": 8,
                           "d_cond_hidden": 8, "d_maxout_units": 8, "d_maxout_pieces": 2},
                 "train": {"batch_size": 8, "steps": 6, "log_every": 2, "checkpoint_every": 3}}
        for preset in ("paper", "strong")
    },
    "tag_eval": {"samples": 4, "neighbors": 3, "top_k": 5, "tuned_neighbors": [1, 3], "knn_k": [1, 3],
                 "mlp_hidden": 8, "mlp_epochs": 2, "image_split": False,
                 "examples": 2},
}  # fmt: skip
TARGETS = ["mnist_classifier", "tag_eval"]  # the stages built (with their upstream) in the end-to-end test
COLOURS = {
    "red": ["red", "apple", "fruit"],
    "green": ["green", "leaf", "plant"],
    "blue": ["blue", "sky", "sea"],
}


def photo_folder(root: Path) -> Path:
    """Tiny tagged photo library: 3 colour groups x 8 JPEGs with tags.csv (tags follow the colour)."""
    from PIL import Image

    rows = ["path,tags"]
    rgb = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 210)}
    for colour, tags in COLOURS.items():
        (root / colour).mkdir(parents=True)
        for i in range(8):
            shade = tuple(max(0, c - 12 * i) for c in rgb[colour])
            Image.new("RGB", (48, 40), shade).save(root / colour / f"{i}.jpg")
            rows.append(f"{colour}/{i}.jpg,{';'.join(tags[: 2 + i % 2])}")
    (root / "tags.csv").write_text("\n".join(rows) + "\n")
    return root


def changed_stages(repo: Path) -> set[str]:
    """Stages already in dvc.lock that `dvc status` reports as changed (never-run stages left out)."""
    out = sh(repo, "dvc", "status", "--json").stdout
    return set(json.loads(out or "{}")) & set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])


def metric_path(repo: Path, metric: str | dict[str, Any]) -> Path:
    """A dvc.yaml `metrics` entry (a path, or {path: options}) as a path in `repo`."""
    return repo / (next(iter(metric)) if isinstance(metric, dict) else metric)


# What each stage's metrics JSON promises on the tiny params and photo folder: keys, then exact values.
PROMISED: dict[str, tuple[set[str], dict[str, Any]]] = {
    "mnist_data": ({"n_train", "n_val", "n_test", "pixel_mean_train"}, {"n_val": 1000, "n_test": 10000}),
    "mnist_classifier": ({"n_train", "steps", "val_accuracy", "test_accuracy"}, {"n_train": 256, "steps": 4}),
    "tags_data": ({"images", "train_images", "val_images", "test_images", "vocab_size"},
                  {"images": 24, "images_read": 24, "source": "folder"}),
    "vocabulary": ({"size", "training_tags"}, {}),
    "tag_embeddings": ({"dim", "vocab_size", "missing"}, {"dim": 8, "missing": 0}),
    "image_features": ({"feature_dim", "images", "skipped"}, {"images": 24, "skipped": 0}),
    **{f"tag_cgan@{preset}": ({"pairs", "steps", "final_d_loss", "final_g_loss", "val_sample_hit", "selected_step"},
                              {"steps": 6}) for preset in ("paper", "strong")},
    "open_cgan": ({"steps", "final_d_loss", "final_g_loss"}, {}),
    "tag_eval": ({"cgan_paper.p_at_5", "cgan_paper.r_at_5", "cgan_paper.map", "cgan_open.p_at_5"}, {}),
}  # fmt: skip
# key parts of values in [0, 1]; not coverage_frac: it counts open-vocabulary words too, over the closed vocabulary
FRACTION = ("accuracy", "p_at_", "r_at_", "f1_at_", "map", "hit", "pixel_mean")


def check_metrics(repo: Path, reproduced: set[str], all_stages: dict[str, dict[str, Any]]) -> None:
    """Every reproduced stage's metrics JSON: flat, finite numbers (strings for names), the keys and exact
    values it promises, fractions in [0, 1], and counts that add up."""
    seen: dict[str, dict[str, Any]] = {}
    for name in reproduced:
        for metric in all_stages[name].get("metrics", []):
            path = metric_path(repo, metric)
            values = json.loads(path.read_text())
            seen[name] = values
            for key, value in values.items():
                assert isinstance(value, (int, float, str)) and not isinstance(value, bool), (
                    path,
                    key,
                    value,
                )
                if isinstance(value, str):
                    continue
                assert math.isfinite(value), (path, key, value)
                if any(part in key.rsplit(".", 1)[-1] for part in FRACTION) and "vs_prior" not in key:
                    assert 0 <= value <= 1, (path, key, value)
    assert set(PROMISED) <= reproduced, sorted(set(PROMISED) - reproduced)
    for name, (keys, exact) in PROMISED.items():
        assert keys | set(exact) <= set(seen[name]), (name, sorted(keys | set(exact) - set(seen[name])))
        assert {k: seen[name][k] for k in exact} == exact, name
    assert seen["mnist_data"]["n_train"] + seen["mnist_data"]["n_val"] == 60000
    tags = seen["tags_data"]
    assert tags["train_images"] + tags["val_images"] + tags["test_images"] == tags["images"]
    assert seen["tag_embeddings"]["vocab_size"] == tags["vocab_size"] == seen["vocabulary"]["training_tags"]
    for preset in ("paper", "strong"):
        assert 1 <= seen[f"tag_cgan@{preset}"]["selected_step"] <= 6
    evals = seen["tag_eval"]
    coverage = [k for k in evals if k.endswith(".coverage_frac")]
    assert coverage, sorted(evals)
    for key in coverage:  # distinct top-5 words over the vocabulary's size
        assert evals[key] == pytest.approx(evals[key.removesuffix("_frac")] / tags["vocab_size"]), key


def tag_with_the_installed_cli(repo: Path, work: Path) -> None:
    """`tagan tag` (the console script pyproject.toml installs) run from an unrelated folder on two new photos
    with the pipeline's bundle: each gets tags from the bundle's vocabulary and an XMP sidecar; the working
    folder stays empty. Run again with torch made unimportable and two decode workers, it gives the same tags:
    the default method and the ONNX backbone need no torch (half the start-up). PYTHONPATH points at the repo
    copy so that the script runs the code under test (the installed package may be another checkout's
    editable install)."""
    from PIL import Image

    found = shutil.which("tagan", path=os.pathsep.join([str(Path(sys.executable).parent), str(VENV_BIN)]))
    assert found, f"no tagan script beside {sys.executable}: `pip install -e .` (make install) installs it"
    script = Path(found)
    photos, elsewhere = work / "new photos", work / "elsewhere"
    photos.mkdir(parents=True)
    elsewhere.mkdir()
    from skimage import data as photos_of

    Image.fromarray(photos_of.coffee()).save(photos / "coffee.jpg")  # real photos the backbone knows
    Image.fromarray(photos_of.chelsea()).save(photos / "cat.jpg")
    Image.new("RGB", (48, 40), (25, 55, 200)).save(photos / "blue.jpg")  # nothing to name: no keyword
    bundle = repo / "data" / "tagger"
    env = {**_env(), "PYTHONPATH": str(repo)}
    cmd = [str(script), "tag", "--model", str(bundle), "--format", "jsonl", "--batch-size", "1", str(photos)]
    proc = subprocess.run([*cmd, "--workers", "0", "--write-xmp"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    blocker = work / "no torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tagan tag imported torch')\n")
    no_torch = {**env, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(repo)])}
    again = subprocess.run([*cmd, "--workers", "2"], cwd=elsewhere, env=no_torch, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert {Path(r["path"]).name: r["tags"] for r in map(json.loads, again.stdout.splitlines())} == {
        name: r["tags"] for name, r in records.items()
    }
    assert sorted(records) == ["blue.jpg", "cat.jpg", "coffee.jpg"], proc.stdout
    assert records.pop("blue.jpg")["tags"] == [] and not (photos / "blue.jpg.xmp").exists()
    vocabulary = {w for f in ("index", "open") for w in json.loads((bundle / f / "words.json").read_text())}
    for name, rec in records.items():
        words = [t["tag"] for t in rec["tags"]]
        assert rec["status"] == "ok" and words and set(words) <= vocabulary, (name, rec)
        sidecar = photos / f"{name}.xmp"
        assert sidecar.is_file() and all(word in sidecar.read_text() for word in words), name
    assert not list(elsewhere.iterdir())  # nothing written where it ran


@pytest.mark.slow
def test_dvc_repro_metrics_and_exactly_the_affected_stages_rerun(tmp_path: Path) -> None:
    check_pipeline(copy_repo(tmp_path / "repo"), tmp_path / "remote")


def check_pipeline(repo: Path, remote: Path) -> None:
    """Tiny repro, metrics, re-runs on code and param changes, bad -S value, push/pull (one repo, to save time)."""
    set_params(
        repo,
        {**TINY, "tags_data": {**TINY["tags_data"], "folder": str(photo_folder(remote.parent / "photos"))}},
    )
    sh(repo, "git", "commit", "-qam", "tiny params")
    sh(repo, "dvc", "repro", *TARGETS, timeout=600)
    all_stages = stages(repo)
    reproduced = set(yaml.safe_load((repo / "dvc.lock").read_text())["stages"])
    assert set(TARGETS) <= reproduced <= set(all_stages)
    check_metrics(repo, reproduced, all_stages)
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "mnist_classifier" in shown and "tag_eval" in shown
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny run")
    assert changed_stages(repo) == set()

    # A second repro with nothing changed runs no stage and rewrites nothing.
    written = [
        repo / "dvc.lock",
        *(metric_path(repo, m) for s in reproduced for m in all_stages[s].get("metrics", [])),
    ]
    stamps = {p: p.stat().st_mtime_ns for p in written}
    again = sh(repo, "dvc", "repro", *TARGETS, timeout=120)
    assert "Running stage" not in again.stdout + again.stderr, again.stdout[-3000:]
    assert {p: p.stat().st_mtime_ns for p in written} == stamps
    assert sh(repo, "git", "status", "--porcelain").stdout == ""

    # The bundle the pipeline built tags new photos through the installed `tagan` console script.
    tag_with_the_installed_cli(repo, remote.parent / "cli")

    # A code change re-runs exactly the stages whose import closure holds the module.
    for module in (
        "tagan/models/mnist.py",
        "tagan/readers/mnist.py",
        "tagan/tagging/tag_cgan.py",
        "tagan/utils.py",
    ):
        assert (repo / module).is_file(), module  # appending to a missing path would create it
        with (repo / module).open("a") as f:
            f.write("\n# touched by the test\n")
        expected = {s for s in reproduced if module in stage_modules(all_stages[s])}
        assert expected, module
        assert changed_stages(repo) == expected, module
        sh(repo, "git", "checkout", "--", module)
    assert changed_stages(repo) == set()

    # A param change re-runs only the stages that read it.
    set_params(repo, {"mnist_classifier": {"hidden": 12}, "tag_cgan": {"strong": {"train": {"steps": 7}}}})
    assert changed_stages(repo) == {"mnist_classifier", "tag_cgan@strong"}
    set_params(repo, {"runtime": {"workers": 1}})  # only stages that declare runtime may re-run
    readers = {s for s in reproduced if {"runtime", "runtime.workers"} & set(all_stages[s].get("params", []))}
    assert changed_stages(repo) == {"mnist_classifier", "tag_cgan@strong"} | readers
    sh(repo, "git", "checkout", "--", "params.yaml")

    # Prepared data round-trips through a DVC remote (the default one, pointed elsewhere for the test).
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "url", str(remote))
    sh(repo, "dvc", "push", "--with-deps", *TARGETS)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(repo, "dvc", "pull", "--with-deps", *TARGETS)
    assert changed_stages(repo) == set()

    # `dvc exp run -S` with a bad value fails with the params message, before any work.
    bad = sh(repo, "dvc", "exp", "run", "-S", "mnist_classifier.epochs=0", "mnist_classifier", ok=False)
    assert bad.returncode != 0
    assert "error: params.yaml: mnist_classifier.epochs: must be > 0, got 0" in bad.stdout + bad.stderr
    assert not [p for p in (repo / ".resume").rglob("*") if p.is_file()]  # no training started


@pytest.mark.slow
def test_default_remote_and_raw_data_push_pull_round_trip(tmp_path: Path) -> None:
    """Raw data is DVC-tracked (its .dvc file in git, the data not); push/pull restores it."""
    repo = copy_repo(tmp_path / "repo")
    assert "url = ~/.cache/tagan/dvc-remote" in (repo / ".dvc" / "config").read_text()  # committed default
    listed = sh(repo, "dvc", "remote", "list").stdout
    assert (
        "storage" in listed
        and str(Path.home() / ".cache/tagan/dvc-remote") in listed
        and "(default)" in listed
    )
    raw = repo / "data" / "raw" / "photos"
    raw.mkdir(parents=True)
    for i in range(3):
        (raw / f"im{i}.jpg").write_bytes(bytes([i]) * 1000)
    sh(repo, "dvc", "add", "data/raw/photos")
    sh(repo, "git", "add", "data/raw/photos.dvc")  # the data itself stays git-ignored
    tracked = sh(repo, "git", "status", "--porcelain", "--untracked-files=all").stdout
    assert "im0.jpg" not in tracked  # git never sees the data

    sh(repo, "dvc", "remote", "modify", "--local", "storage", "url", str(tmp_path / "remote"))
    sh(repo, "dvc", "push", "data/raw/photos.dvc")
    shutil.rmtree(raw)
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(repo, "dvc", "pull", "data/raw/photos.dvc")
    assert sorted(p.name for p in raw.iterdir()) == ["im0.jpg", "im1.jpg", "im2.jpg"]
    assert (raw / "im2.jpg").read_bytes() == bytes([2]) * 1000
