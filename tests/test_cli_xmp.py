"""The CLI with photo managers' sidecars: --root, --mode replace-own, --report, untag, and any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from tagan.photos import sidecars
from tagan.readers import xmp
from tests.helpers import system_tool
from tests.test_cli import _picture, bundle, run_cli  # noqa: F401  (bundle: the session fixture)
from tests.xmp_fixtures import (
    DARKTABLE,
    DIGIKAM,
    LIGHTROOM,
    as_list,
    exiftool,
    rdf_facts,
    without,
)

ROOT = Path(__file__).resolve().parents[1]


def test_model_default_is_found_from_any_working_directory(tmp_path: Path) -> None:
    """`cd ~ && tagan info` used to look for ./data/tagger only; now it falls back to this repository's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "info"], cwd=elsewhere, capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    repo_model = ROOT / "data" / "tagger"
    if repo_model.is_dir() and any(repo_model.iterdir()):
        assert proc.returncode == 0 and str(repo_model) in proc.stdout, proc.stderr
    else:
        assert proc.returncode == cli.EXIT_USAGE and f"no trained model in {repo_model};" in proc.stderr
    (elsewhere / "data" / "tagger").mkdir(parents=True)  # a data/tagger here wins (an empty one: says so)
    here = subprocess.run([sys.executable, str(ROOT / "cli.py"), "info"], cwd=elsewhere, capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert here.returncode == cli.EXIT_USAGE and "no trained model in data/tagger;" in here.stderr


def test_untag_dry_run_then_untag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "album"
    (folder / "sub").mkdir(parents=True)
    person = folder / "a.jpg.xmp"
    person.write_text(DIGIKAM, encoding="utf-8")
    sidecars.merge_keywords(person, ["sea", "dog"], model="m1")
    mine = folder / "sub" / "b.png.xmp"
    sidecars.merge_keywords(mine, ["cat"], model="m1")
    untouched = folder / "c.jpg.xmp"
    untouched.write_text(LIGHTROOM, encoding="utf-8")
    before = {p: p.read_bytes() for p in (person, mine, untouched)}

    assert cli.main(["untag", "--dry-run", "--format", "table", str(folder)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "would remove subject: sea" in out and "would delete" in out and "c.jpg.xmp" not in out
    assert {p: p.read_bytes() for p in before} == before

    assert cli.main(["untag", "--format", "jsonl", str(folder)]) == cli.EXIT_OK
    recs = {Path(r["sidecar"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert recs["a.jpg.xmp"]["removed"] == ["sea"] and recs["b.png.xmp"]["status"] == "deleted"
    assert recs["c.jpg.xmp"]["status"] == "unchanged"
    assert rdf_facts(person.read_bytes()) == rdf_facts(DIGIKAM) and not mine.exists()
    assert untouched.read_bytes() == before[untouched]
    missing = cli.main(["untag", str(tmp_path / "nowhere")])
    assert missing == cli.EXIT_USAGE


def screenshot(html: Path, tmp_path: Path) -> np.ndarray:
    """The page as headless Chromium renders it, (H, W, 3)."""
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}", "--window-size=1200,900"]  # fmt: skip
    proc = subprocess.run(
        [system_tool("chromium", "chromium-browser"), *flags, html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB"))


@pytest.mark.slow
def test_review_tag_retag_and_untag_a_photo_managers_folder(tmp_path: Path, bundle: Path) -> None:  # noqa: F811
    folder = tmp_path / "album"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c.png"]):
        Image.fromarray(_picture(seed=30 + i)).save(folder / name)
    originals = {folder / "a.jpg.xmp": DIGIKAM, folder / "b.jpg.xmp": DARKTABLE}
    for path, text in originals.items():
        path.write_text(text, encoding="utf-8")
    photos = {p: p.read_bytes() for p in folder.iterdir() if p.suffix != ".xmp"}
    base = ["tag", "--model", str(bundle), "--workers", "0", "--format", "json", "--seed", "1"]

    # 1. review: the contact sheet shows what --write-xmp would change, and nothing is written
    report = tmp_path / "review" / "tags.html"
    proc = run_cli(*base, "--report", str(report), str(folder))
    assert proc.returncode == 0, proc.stderr
    html = report.read_text(encoding="utf-8")
    assert html.count('<section class="photo') == 3 and html.count("data:image/jpeg;base64,") == 3
    assert "would change" in html and "digiKam:TagsList" in html
    assert {p: p.read_text(encoding="utf-8") for p in originals} == originals and not (
        folder / "c.png.xmp"
    ).exists()
    pixels = screenshot(report, tmp_path).astype(int)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200

    # 2. write under a nested root; person fields kept; exiftool reads all three properties
    proc = run_cli(*base, "--write-xmp", "--root", "auto/tagan", str(folder))
    assert proc.returncode == 0, proc.stderr
    tags = {Path(r["path"]).name: [t["tag"] for t in r["tags"]] for r in json.loads(proc.stdout)}
    for path, text in originals.items():
        assert without(rdf_facts(path.read_bytes())) == without(rdf_facts(text))
    seen = exiftool(folder / "c.png.xmp")
    assert as_list(seen["Subject"]) == tags["c.png"]
    assert as_list(seen["HierarchicalSubject"]) == [f"auto|tagan|{t}" for t in tags["c.png"]]
    assert as_list(seen["TagsList"]) == [f"auto/tagan/{t}" for t in tags["c.png"]]

    # 3. re-tag, replacing only tagan's own keywords (another root, as after a newer model)
    proc = run_cli(*base, "--write-xmp", "--mode", "replace-own", "--force", "--root", "tagan", str(folder))
    assert proc.returncode == 0, proc.stderr
    for path in [*originals, folder / "c.png.xmp"]:
        hierarchy = xmp.read_fields(path)["hierarchicalSubject"]
        assert not [h for h in hierarchy if h.startswith("auto|")] and [
            h for h in hierarchy if h.startswith("tagan|")
        ]
    assert "Places|Beach" in xmp.read_fields(folder / "a.jpg.xmp")["hierarchicalSubject"]

    # 4. untag from another working directory: the person's sidecars come back exactly, tagan's own one goes
    dry = subprocess.run([sys.executable, str(ROOT / "cli.py"), "untag", "--dry-run", "album"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert dry.returncode == 0 and (folder / "c.png.xmp").exists(), dry.stderr
    undo = subprocess.run([sys.executable, str(ROOT / "cli.py"), "untag", "--format", "jsonl", "album"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert undo.returncode == 0, undo.stderr
    for path, text in originals.items():
        assert rdf_facts(path.read_bytes()) == rdf_facts(text)
    assert not (folder / "c.png.xmp").exists()
    assert {p: p.read_bytes() for p in photos} == photos  # photos never touched
    assert not list(folder.glob(".*")) and not list(report.parent.glob(".*"))  # no temp files left


@pytest.mark.slow
def test_stem_style_raw_and_jpeg_share_one_sidecar(tmp_path: Path, bundle: Path) -> None:  # noqa: F811
    """--xmp-style stem: IMG_1.DNG and IMG_1.JPG share IMG_1.xmp (Lightroom): one sidecar named by both
    records, each keyword once, re-runs cached, and untag removes tagan's keywords once."""
    from tests.photo_fixtures import make_dng

    folder = tmp_path / "shoot"
    folder.mkdir()
    for n in (1, 2):
        rgb = _picture(seed=40 + n)
        Image.fromarray(rgb).save(folder / f"IMG_{n}.JPG")
        make_dng(folder / f"IMG_{n}.DNG", rgb)
    (folder / "IMG_1.xmp").write_text(LIGHTROOM, encoding="utf-8")  # a person's Lightroom sidecar
    photos = sorted(p.name for p in folder.iterdir() if p.suffix != ".xmp")
    args = ["tag", "--model", str(bundle), "--write-xmp", "--xmp-style", "stem", "--format", "json",
            "--workers", "0"]  # fmt: skip

    def tag(*extra: str) -> dict[str, dict]:
        proc = run_cli(*args, *extra, str(folder))
        assert proc.returncode == cli.EXIT_OK, proc.stderr
        return {Path(r["path"]).name: r for r in json.loads(proc.stdout)}

    def no_duplicates(sidecar: Path) -> None:
        for name, values in xmp.read_fields(sidecar).items():
            assert len(values) == len({v.casefold() for v in values}), (name, values)

    person = {w.casefold() for w in xmp.read_keywords(folder / "IMG_1.xmp")}
    dry = tag("--dry-run")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*photos, "IMG_1.xmp"])  # nothing written
    first = tag()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*photos, "IMG_1.xmp", "IMG_2.xmp"])
    for n in (1, 2):
        jpeg, raw, sidecar = first[f"IMG_{n}.JPG"], first[f"IMG_{n}.DNG"], folder / f"IMG_{n}.xmp"
        assert jpeg["status"] == raw["status"] == "ok" and jpeg["tags"] and raw["tags"] == jpeg["tags"]
        assert raw["features_from"].endswith(f"IMG_{n}.JPG")  # one shot: the twin's features, the same tags
        assert jpeg["sidecar"] == raw["sidecar"] == str(sidecar)  # both records name the one sidecar
        words = [t["tag"] for t in jpeg["tags"]]
        added = jpeg["xmp_added"] + raw["xmp_added"]
        assert sorted(added) == sorted(w for w in words if n == 2 or w.casefold() not in person)  # each once
        assert (
            dry[f"IMG_{n}.JPG"]["xmp_added"] + dry[f"IMG_{n}.DNG"]["xmp_added"] == added
        )  # dry run: the same
        no_duplicates(sidecar)
        assert xmp.read_model(sidecar) and [t for t, _ in xmp.read_tags(sidecar)] == words
    subjects = xmp.read_fields(folder / "IMG_1.xmp")["subject"]
    sidecars = {n: (folder / f"IMG_{n}.xmp").read_bytes() for n in (1, 2)}

    again = tag()
    assert {r["status"] for r in again.values()} == {"cached"}
    assert {n: (folder / f"IMG_{n}.xmp").read_bytes() for n in (1, 2)} == sidecars
    assert all(again[name]["tags"] == first[name]["tags"] for name in first)
    forced = tag("--force", "--mode", "replace-own")
    assert all(r["status"] == "ok" and r["xmp_added"] == [] for r in forced.values())
    assert xmp.read_fields(folder / "IMG_1.xmp")["subject"] == subjects
    for n in (1, 2):
        no_duplicates(folder / f"IMG_{n}.xmp")

    untag = run_cli("untag", "--format", "jsonl", *(str(folder / name) for name in photos))
    assert untag.returncode == cli.EXIT_OK, untag.stderr
    recs = [json.loads(line) for line in untag.stdout.splitlines()]
    assert sorted(Path(r["sidecar"]).name for r in recs) == ["IMG_1.xmp", "IMG_2.xmp"]  # each sidecar once
    by_name = {Path(r["sidecar"]).name: r for r in recs}
    assert by_name["IMG_1.xmp"]["status"] == "ok" and by_name["IMG_2.xmp"]["status"] == "deleted"
    assert rdf_facts((folder / "IMG_1.xmp").read_bytes()) == rdf_facts(
        LIGHTROOM.encode()
    )  # as the person left it
    assert sorted(p.name for p in folder.iterdir()) == sorted([*photos, "IMG_1.xmp"])
