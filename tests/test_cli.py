"""The tagger CLI: finding photos, output formats, exit codes, XMP sidecars, bad files, determinism."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from tagan.photos.discovery import iter_photos
from tagan.photos.records import Record, Writer
from tests.helpers import without_root_privileges
from tests.tag_fixtures import TOPICS, make_tag_data, tiny_tag_cgan_params
from tests.test_xmp import DIGIKAM_SIDECAR, as_list, exiftool

ROOT = Path(__file__).resolve().parents[1]
GOOD = [
    "rotated.jpg",
    "alpha.png",
    "gray.jpg",
    "cmyk.jpg",
    "deep16.png",
    "ciel été 1.jpg",
    "nested/deeper/leaf.png",
]
BAD = {"truncated.jpg": "truncated", "text.jpg": "not an image", "empty.jpg": "empty", "bomb.png": "large"}


def _picture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random RGB picture (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))


def _png_with_size(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares width x height (a decompression bomb by its header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    idat = zlib.compress(b"\x00" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def make_photo_folder(root: Path) -> Path:
    """A folder of the photos real collections hold: odd modes, bad files, odd names, nesting, a symlink loop."""
    root.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(_picture())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    rgb.save(root / "rotated.jpg", exif=exif.tobytes())
    rgba = Image.fromarray(_picture(seed=1)).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))))
    rgba.save(root / "alpha.png")
    Image.fromarray(_picture(seed=2)).convert("L").save(root / "gray.jpg")
    Image.fromarray(_picture(seed=3)).convert("CMYK").save(root / "cmyk.jpg")
    deep = (_picture(seed=4)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")  # mode I;16
    Image.fromarray(_picture(seed=5)).save(root / "ciel été 1.jpg")
    (root / "nested" / "deeper").mkdir(parents=True)
    Image.fromarray(_picture(seed=6)).save(root / "nested" / "deeper" / "leaf.png")
    full = io.BytesIO()
    Image.fromarray(_picture(seed=7)).save(full, "JPEG")
    (root / "truncated.jpg").write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    (root / "text.jpg").write_text("this is not a picture\n")
    (root / "empty.jpg").write_bytes(b"")
    _png_with_size(root / "bomb.png", 100_000, 100_000)
    (root / "notes.txt").write_text("not a photo suffix: ignored in folders\n")
    os.symlink("..", root / "nested" / "loop")  # nested/loop -> root: a cycle
    return root


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return make_photo_folder(tmp_path / "photos")


def rel(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_iter_photos_recursive_loop_safe_and_image_suffixes_only(photos: Path) -> None:
    found = rel(list(iter_photos([photos])), photos)
    assert sorted(found) == sorted(GOOD + list(BAD))
    assert len(found) == len(set(found))  # the loop did not repeat anything
    os.symlink("gray.jpg", photos / "alias.jpg")  # the same file twice: once
    os.link(photos / "gray.jpg", photos / "hardlink.jpg")  # another name of its own: a photo of its own
    found = rel(list(iter_photos([photos])), photos)
    assert len({"alias.jpg", "gray.jpg"} & set(found)) == 1 and "hardlink.jpg" in found


def test_iter_photos_exclude_and_explicit_files(photos: Path) -> None:
    found = rel(list(iter_photos([photos], exclude=["nested", "*.png"])), photos)
    assert not any(f.startswith("nested") or f.endswith(".png") for f in found)
    assert "rotated.jpg" in found
    # a file given explicitly is tried whatever its suffix, and given twice it is tagged once
    files = [photos / "notes.txt", photos / "gray.jpg", photos / "gray.jpg"]
    assert rel(list(iter_photos(files)), photos) == ["notes.txt", "gray.jpg"]


def test_writer_formats_parse() -> None:
    recs = [
        Record(Path("a b.jpg"), tags=[("cat", 0.5), ("sofa", 0.25)]),
        Record(Path("x.jpg"), "skipped: not an image"),
    ]
    outputs = {}
    for fmt in ("json", "jsonl", "csv", "table"):
        buf = io.StringIO()
        writer = Writer(buf, fmt)
        for rec in recs:
            writer.write(rec)
        writer.close()
        outputs[fmt] = buf.getvalue()
    data = json.loads(outputs["json"])
    assert data[0] == {
        "path": "a b.jpg",
        "status": "ok",
        "tags": [{"tag": "cat", "score": 0.5}, {"tag": "sofa", "score": 0.25}],
    }
    assert [json.loads(line) for line in outputs["jsonl"].splitlines()] == data
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert (
        rows[0]["tags"] == "cat;sofa"
        and rows[0]["scores"] == "0.5000;0.2500"
        and rows[1]["status"] == "skipped: not an image"
    )
    assert "cat (0.50)" in outputs["table"]
    dry = io.StringIO()
    Writer(dry, "table", dry_run=True).write(
        Record(Path("a.jpg"), tags=[("cat", 0.5)], sidecar=Path("a.jpg.xmp"), xmp_added=["cat"])
    )
    assert "would add cat -> a.jpg.xmp" in dry.getvalue()
    empty = io.StringIO()
    Writer(empty, "json").close()
    assert json.loads(empty.getvalue()) == []


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (one torch thread: the test machine is shared)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_help_and_usage_errors(tmp_path: Path, photos: Path) -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "tag" in top.stdout and "info" in top.stdout and "130" in top.stdout
    sub = run_cli("tag", "--help")
    for option in (
        "--exclude",
        "--model",
        "--method",
        "--format",
        "--output",
        "--write-xmp",
        "--xmp-style",
        "--dry-run",
        "--top-k",
        "--min-score",
        "--samples",
        "--seed",
        "--vocab",
        "--batch-size",
        "--workers",
        "--device",
        "--quiet",
        "--force",
    ):
        assert option in sub.stdout
    assert run_cli("tag", "--top-k", "0", str(photos)).returncode == 2
    missing = run_cli("tag", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    no_model = run_cli(
        "tag", "--model", str(tmp_path / "no_model"), str(photos), "--output", str(tmp_path / "out.json")
    )
    assert no_model.returncode == 2 and "make repro" in no_model.stderr
    assert not (tmp_path / "out.json").exists()
    assert no_model.stderr.count("\n") == 1  # one readable line, no traceback
    info = run_cli("info", "--model", str(tmp_path / "no_model"))
    assert info.returncode == 2 and "make repro" in info.stderr


# --------------------------------------------------------------------------------------------- a tiny real bundle
WORDS = sorted({t for ts in TOPICS.values() for t in ts})


def make_bundle(root: Path) -> Path:
    """A tiny real bundle: the tagging stages' run() (tag_embeddings, tag_cgan paper preset, tag_eval) on
    generated 1280-d features labelled with the backbone the CLI then runs (efficientnet_lite0)."""
    from pipeline.tag_cgan import Params as CGANParams
    from pipeline.tag_cgan import run as train_cgan
    from pipeline.tag_embeddings import Params as EmbParams
    from pipeline.tag_embeddings import run as embed
    from pipeline.tag_eval import Params as EvalParams
    from pipeline.tag_eval import run as evaluate
    from tagan.config import Runtime, from_dict
    from tagan.evaluation.photo_choices import PhotoChoices

    paths = make_tag_data(root / "data", dim=1280)
    with np.load(paths["features"]) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(paths["features"], **{**arrays, "backbone": np.array("efficientnet_lite0")})
    runtime = Runtime(num_threads=1)
    embed(EmbParams(dim=8, epochs=5), runtime, paths["items"], paths["vocab"], root / "emb")
    tiny = from_dict(CGANParams, tiny_tag_cgan_params(train={"steps": 10, "log_every": 5}), "tag_cgan.paper")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tagan.training.RESUME_DIR", root / "resume")
        train_cgan(tiny, runtime, "paper", paths["items"], paths["vocab"], paths["features"],
                   root / "emb", root / "paper.pt", root / "paper.csv")  # fmt: skip
    cfg = EvalParams(
        samples=8,
        mlp_epochs=5,
        knn_k=[1, 3],
        tuned_neighbors=[1, 3],
        examples=2,
        image_split=False,
        chosen=PhotoChoices(min_score=0.0, max_entropy=7.0),  # generated photos: no real-photo threshold
    )
    evaluate(cfg, runtime, paths["items"], paths["vocab"], paths["features"], root / "emb",
             {"paper": root / "paper.pt"}, root / "tagger", root / "reports")  # fmt: skip
    return root / "tagger"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


def tag_json(*args: str, photos: Path, bundle: Path) -> tuple[int, dict[str, dict], str]:
    """Run `tag --format json` and index the records by path relative to `photos`."""
    proc = run_cli("tag", "--model", str(bundle), "--format", "json", "--workers", "0", *args)
    records = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc.returncode, {Path(r["path"]).relative_to(photos).as_posix(): r for r in records}, proc.stderr


def library_tags(root: Path, names: list[str], bundle: Path, seed: int) -> dict[str, list[tuple[str, float]]]:
    """Tags of root/name by name, from the library alone: tagan.tagging.features on the bundle's backbone run by
    torch (the CLI is run with --runtime torch too: ONNX Runtime's features differ in the last bits, which can
    swap two tags of equal votes), then Tagger.tag per photo."""
    import dataclasses

    import torch

    from tagan.tagging.features import extract_features, load_backbone
    from tagan.tagging.tagger import Tagger

    tagger = Tagger.load(bundle, "default")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI runs (OMP_NUM_THREADS=1)
    try:
        cfg = dataclasses.replace(tagger.bundle.features, runtime="torch")
        backbone = load_backbone(cfg, "cpu")
        paths = [root / name for name in names]
        decode = {"max_side": cfg.max_side, "max_pixels": cfg.max_pixels}
        feats = dict(
            zip(
                names,
                (e.feature for e in extract_features(paths, backbone, batch_size=4, workers=0, **decode)),
            )
        )
    finally:
        torch.set_num_threads(threads)
    return {
        name: tagger.tag(f[None], top_k=10, seed=seed)[0] for name, f in feats.items()
    }  # bundle's decoding


@pytest.mark.slow
def test_tag_folder_bad_files_skipped_outputs_parse_seed_determinism(
    tmp_path: Path, photos: Path, bundle: Path
) -> None:
    code, records, stderr = tag_json(
        "--seed", "3", "--runtime", "torch", str(photos), photos=photos, bundle=bundle
    )
    assert code == cli.EXIT_SKIPPED, stderr
    assert sorted(records) == sorted(GOOD + list(BAD))
    # each photo's tags are the library Tagger's for its backbone features (the evaluated model, seed 3)
    expected = library_tags(photos, GOOD, bundle, seed=3)
    for name in GOOD:
        assert records[name]["status"] == "ok"
        got = [(t["tag"], t["score"]) for t in records[name]["tags"]]
        assert [w for w, _ in got] == [w for w, _ in expected[name]] and 0 < len(got) <= 10, name
        assert [s for _, s in got] == pytest.approx([s for _, s in expected[name]], abs=5e-5), (
            name
        )  # 4 decimals
    for name, reason in BAD.items():
        assert records[name]["status"].startswith("skipped: ") and reason in records[name]["status"], records[
            name
        ]
        assert records[name]["tags"] == []

    # the good photos alone, in other batches, to a CSV file: exit 0, same seed -> same tags, --min-score applied
    good = [str(photos / name) for name in GOOD]
    out = tmp_path / "out" / "tags.csv"
    args = ["--format", "csv", "--output", str(out), "--seed", "3", "--batch-size", "2", "--min-score", "0.1",
            "--runtime", "torch"]  # fmt: skip
    proc = run_cli("tag", "--model", str(bundle), "--workers", "1", *args, *good)
    assert proc.returncode == cli.EXIT_OK and proc.stdout == "", proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == good and all(r["status"] == "ok" for r in rows)
    for row, name in zip(rows, GOOD):
        expected = [t for t in records[name]["tags"] if t["score"] >= 0.1]
        assert row["tags"] == ";".join(t["tag"] for t in expected)
        assert all(float(s) >= 0.1 for s in row["scores"].split(";") if s)


@pytest.mark.slow
def test_vocab_top_k_and_other_method(tmp_path: Path, photos: Path, bundle: Path) -> None:
    vocab = tmp_path / "my_keywords.txt"
    vocab.write_text("# my keywords\nCat\ndog\nnot-in-model\n", encoding="utf-8")
    args = ["--vocab", str(vocab), "--top-k", "1", "--method", "knn", "--format", "jsonl"]
    proc = run_cli("tag", "--model", str(bundle), *args, str(photos / "gray.jpg"), str(photos / "alpha.png"))
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(recs) == 2 and all(len(r["tags"]) == 1 and r["tags"][0]["tag"] in {"cat", "dog"} for r in recs)
    assert "1 of 3 keywords are not in the model's vocabulary" in proc.stderr


@pytest.mark.slow
def test_info_shows_model_and_metrics(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_cli("info", "--model", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert "tags_data" in proc.stdout and "p_at_5" in proc.stdout and "knn" in proc.stdout
    assert cli.main(["info", "--model", str(bundle), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["vocab_size"] == len(WORDS) and data["model_id"].startswith("tagan-default-")


def digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_write_xmp_merges_preserves_and_reruns_are_cached(tmp_path: Path, bundle: Path) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b b.jpg", "c.png"]):
        Image.fromarray(_picture(seed=10 + i)).save(folder / name)
    (folder / "b b.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    photo_digests = {p.name: digest(p) for p in folder.iterdir() if p.suffix != ".xmp"}
    xmp_args = ["--write-xmp", "--format", "json", "--seed", "1"]
    first = run_cli("tag", "--model", str(bundle), *xmp_args, str(folder / "a.jpg"), str(folder / "b b.jpg"))
    assert first.returncode == 0, first.stderr
    recs = {Path(r["path"]).name: r for r in json.loads(first.stdout)}
    tags_a = [t["tag"] for t in recs["a.jpg"]["tags"]]
    assert tags_a and recs["a.jpg"]["xmp_added"] == tags_a
    seen_a, seen_b = (exiftool(folder / f"{n}.xmp") for n in ("a.jpg", "b b.jpg"))
    assert as_list(seen_a["Subject"]) == tags_a  # an independent reader sees the new sidecar's keywords
    new_b = [t["tag"] for t in recs["b b.jpg"]["tags"] if t["tag"] not in ("beach", "family")]
    assert as_list(seen_b["Subject"]) == ["beach", "Family", *new_b]  # existing keywords kept first
    assert (
        seen_b["Rating"] == 4
        and seen_b["Title"] == "Holiday in Brittany"
        and as_list(seen_b["TagsList"])[0] == "Places/Beach"
    )
    sidecars = {p.name: digest(p) for p in folder.glob("*.xmp")}

    again = run_cli("tag", "--model", str(bundle), *xmp_args, str(folder))  # c.png is new, a and b are cached
    assert again.returncode == 0, again.stderr
    recs = {Path(r["path"]).name: r for r in json.loads(again.stdout)}
    assert recs["a.jpg"]["status"] == "cached" and recs["b b.jpg"]["status"] == "cached"
    assert [t["tag"] for t in recs["a.jpg"]["tags"]] == tags_a
    assert recs["c.png"]["status"] == "ok" and (folder / "c.png.xmp").exists()
    assert all(digest(folder / n) == d for n, d in sidecars.items())

    forced = run_cli(
        "tag", "--model", str(bundle), *xmp_args, "--force", str(folder / "a.jpg"), str(folder / "b b.jpg")
    )
    assert [(r["status"], r["xmp_added"]) for r in json.loads(forced.stdout)] == [("ok", [])] * 2
    assert as_list(exiftool(folder / "a.jpg.xmp")["Subject"]) == tags_a  # no duplicates after a forced re-run

    dry_args = ["--write-xmp", "--xmp-style", "stem", "--dry-run", "--format", "json"]
    dry = run_cli("tag", "--model", str(bundle), *dry_args, str(folder / "a.jpg"))
    (rec,) = json.loads(dry.stdout)
    assert dry.returncode == 0 and rec["sidecar"] == str(folder / "a.xmp")
    assert rec["tags"] and rec["xmp_added"] == [t["tag"] for t in rec["tags"]]  # what would be written
    assert not (folder / "a.xmp").exists()
    assert {
        p.name: digest(p) for p in folder.iterdir() if p.suffix != ".xmp"
    } == photo_digests  # photos untouched
    assert not list(folder.glob(".*"))  # no temp files left


def test_without_root_privileges_makes_a_read_only_folder_read_only(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    os.chmod(locked, 0o555)
    try:
        probe = [sys.executable, "-c", f"open({str(locked / 'x')!r}, 'w')"]
        proc = subprocess.run(without_root_privileges(probe), capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "PermissionError" in proc.stderr, proc.stderr
        assert not (locked / "x").exists()
    finally:
        os.chmod(locked, 0o755)


@pytest.mark.slow
def test_write_xmp_read_only_folder_fails_clearly_and_loses_nothing(tmp_path: Path, bundle: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    Image.fromarray(_picture(seed=20)).save(folder / "a.jpg")
    (folder / "a.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    Image.fromarray(_picture(seed=21)).save(folder / "b.jpg")
    os.chmod(folder, 0o555)
    try:
        cmd = [sys.executable, str(ROOT / "cli.py"), "tag", "--model", str(bundle), "--write-xmp", "--format",
               "jsonl", str(folder)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            without_root_privileges(cmd), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
        )
        assert proc.returncode == cli.EXIT_SKIPPED, proc.stderr
        recs = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(recs) == 2
        for rec in recs:
            assert rec["status"].startswith("skipped: cannot write") and "writable" in rec["status"]
            assert rec["tags"]  # the tags are still reported
        assert (folder / "a.jpg.xmp").read_text(encoding="utf-8") == DIGIKAM_SIDECAR
        assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.jpg.xmp", "b.jpg"]
    finally:
        os.chmod(folder, 0o755)


# the CLI with os.replace pausing (temp sidecar written, not yet renamed) on the 2nd sidecar until SIGINT
PAUSING_CLI = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
replace, renames = os.replace, []
def pausing(src, dst, *args, **kwargs):
    if str(dst).endswith(".xmp"):
        renames.append(dst)
        if len(renames) == 2:
            Path("paused").write_text(str(src))
            while True:
                time.sleep(0.05)  # SIGINT lands here, mid-write
    return replace(src, dst, *args, **kwargs)
os.replace = pausing
import cli
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_ctrl_c_leaves_no_partial_sidecar_or_output_and_the_run_resumes(tmp_path: Path, bundle: Path) -> None:
    """SIGINT while the 2nd sidecar's temp file is written but not renamed (a deterministic point, however
    loaded the machine): exit 130, the 1st sidecar complete, no temp or output file; the next run resumes."""
    import signal
    import time

    from tagan.readers import xmp

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(_picture(seed=100 + i)).save(folder / f"p{i:03d}.jpg")
    out = tmp_path / "tags.json"
    args = ["tag", "--model", str(bundle), "--write-xmp", "--output", str(out), "--batch-size", "2",
            "--workers", "0", str(folder)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a shell without job control starts background jobs with SIGINT ignored: give the CLI a terminal's default
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_CLI, str(ROOT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    paused = tmp_path / "paused"
    deadline = time.monotonic() + 280
    while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert paused.exists(), proc.communicate(timeout=60)[1]
    assert Path(paused.read_text()).exists()  # the temp sidecar, complete and not yet renamed
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(folder.glob(".*"))  # no partial output, no temp sidecar
    (first,) = folder.glob("*.xmp")
    assert first.name == "p000.jpg.xmp" and xmp.read_keywords(first) and xmp.read_model(first)
    paused.unlink()

    resumed = run_cli(
        "tag", "--model", str(bundle), "--write-xmp", "--format", "jsonl", "--workers", "0", str(folder)
    )
    assert resumed.returncode == cli.EXIT_OK, resumed.stderr
    status = {Path(r["path"]).name: r["status"] for r in map(json.loads, resumed.stdout.splitlines())}
    assert status == {"p000.jpg": "cached", **{f"p{i:03d}.jpg": "ok" for i in range(1, 6)}}
    assert len(list(folder.glob("*.xmp"))) == 6 and not list(folder.glob(".*"))


@pytest.mark.slow
def test_people_get_person_words_unless_no_faces(tmp_path: Path, bundle: Path) -> None:
    from skimage import data as photos_of

    from tagan.photos.session import TagOptions, tag_features

    Image.fromarray(photos_of.astronaut()).save(tmp_path / "astronaut.jpg")
    Image.fromarray(photos_of.chelsea()).save(tmp_path / "cat.jpg")
    paths = [tmp_path / "astronaut.jpg", tmp_path / "cat.jpg"]
    for no_faces, expect in ((False, [True, False]), (True, [False, False])):
        args = cli.build_parser().parse_args(["tag", "--model", str(bundle), "--workers", "0", "--device", "cpu",
                                              *(["--no-faces"] if no_faces else []), str(tmp_path)])  # fmt: skip
        session = cli.open_session(args)
        got = [
            tag_features(session, e.feature, TagOptions(), e.faces)
            for e in cli.photo_features(session, paths, args)
        ]
        assert ["person" in [w for w, _ in tags] for tags in got] == expect
        assert session.settings(TagOptions())["faces"] is not no_faces  # the ledger re-tags when it changes
