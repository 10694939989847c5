"""Sidecar writes that lose nothing (lock, compare-before-rename, stale temps) and skips that know what changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

import cli
from tagan.photos import ledger, sidecars
from tagan.readers import xmp
from tests.helpers import system_tool
from tests.test_cli import _picture, bundle, run_cli  # noqa: F401  (bundle: the session fixture)
from tests.xmp_fixtures import DIGIKAM

ROOT = Path(__file__).resolve().parents[1]


def external_edit(sidecar: Path, word: str) -> None:
    """What digiKam or exiftool does: rewrite the file (new inode) with one more dc:subject keyword."""
    text = sidecar.read_text(encoding="utf-8")
    tmp = sidecar.with_name("external.tmp")
    tmp.write_text(text.replace("<rdf:Bag>", f"<rdf:Bag>\n     <rdf:li>{word}</rdf:li>", 1), encoding="utf-8")
    os.replace(tmp, sidecar)


def exiftool_edit(sidecar: Path, word: str) -> None:
    """exiftool adding a keyword (it writes a new file and renames it over the old one)."""
    subprocess.run([system_tool("exiftool"), "-q", "-overwrite_original", f"-XMP-dc:Subject+={word}", str(sidecar)],
                   check=True, capture_output=True)  # fmt: skip


@pytest.mark.parametrize("edit", [external_edit, exiftool_edit], ids=["rewrite", "exiftool"])
def test_a_change_between_read_and_rename_is_merged_again_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Callable[[Path, str], None]
) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM, encoding="utf-8")
    serialize, calls = sidecars._serialize, []

    def meanwhile(*args: object) -> str:  # another program writes just after tagan read the file
        calls.append(1)
        if len(calls) == 1:
            edit(sidecar, "from-digikam")
        return serialize(*args)

    monkeypatch.setattr(sidecars, "_serialize", meanwhile)
    change = sidecars.merge_keywords(sidecar, ["kite"], model="m1")
    assert change.written and change.attempts == 2
    assert {"from-digikam", "kite", "Anna", "dog"} <= set(xmp.read_keywords(sidecar))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg.xmp"]  # no temp file left


def test_a_file_that_never_stops_changing_is_left_as_the_other_program_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DIGIKAM, encoding="utf-8")
    serialize, count = sidecars._serialize, []

    def always(*args: object) -> str:
        count.append(1)
        external_edit(sidecar, f"edit{len(count)}")
        return serialize(*args)

    monkeypatch.setattr(sidecars, "_serialize", always)
    with pytest.raises(sidecars.SidecarChangedError) as err:
        sidecars.merge_keywords(sidecar, ["kite"], model="m1")
    assert len(count) == sidecars.MAX_ATTEMPTS and "another program" in sidecars.sidecar_write_error(
        sidecar, err.value
    )
    words = xmp.read_keywords(sidecar)
    assert "kite" not in words and f"edit{sidecars.MAX_ATTEMPTS}" in words
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg.xmp"]


def test_threads_sharing_a_folder_lose_no_keyword(tmp_path: Path) -> None:
    """The folder lock serialises writers (an flock per open file: threads of one process too)."""
    names = [f"p{i}.jpg.xmp" for i in range(3)]

    def writer(k: int) -> None:
        for round_ in range(10):
            for name in names:
                sidecars.merge_keywords(tmp_path / name, [f"w{k}r{round_}"], model=f"m{k}")

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"w{k}r{r}" for k in range(4) for r in range(10)}
    for name in names:
        assert set(xmp.read_keywords(tmp_path / name)) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_stale_temp_files_of_tagan_are_swept_and_nothing_else(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".a.jpg.xmp.tagan-{int(dead.stdout)}-0123abcd.tmp"  # its writer is gone
    old = tmp_path / f".b.jpg.xmp.tagan-{os.getpid()}-89abcdef.tmp"  # a live pid, but older than a minute
    fresh = tmp_path / f".c.jpg.xmp.tagan-{os.getpid()}-00000000.tmp"  # a live writer's, right now
    others = [
        tmp_path / ".a.jpg.xmp.x1y2z3.tmp",
        tmp_path / "notes.tagan-1-0123abcd.tmp",
    ]  # not tagan's naming
    for path in [stale, old, fresh, *others]:
        path.write_text("<x:xmpmeta")
    os.utime(old, (time.time() - 120, time.time() - 120))
    assert sorted(sidecars.sweep_stale_temps(tmp_path)) == sorted([stale, old])
    assert sorted(tmp_path.iterdir()) == sorted([fresh, *others])


def test_retag_reasons(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    Image.fromarray(_picture(seed=1)).save(photo)
    settings = {
        "top_k": 10,
        "min_score": 0.0,
        "samples": None,
        "seed": 0,
        "vocab": None,
        "runtime": "onnxruntime",
    }
    sidecar = tmp_path / "a.jpg.xmp"
    assert (
        ledger.retag_reason(ledger.read_ledger(sidecar), "a.jpg", ledger.fingerprint(photo), "m1", settings)
        == "new"
    )
    record = ledger.made_record(ledger.fingerprint(photo), "m1", settings)
    sidecars.merge_keywords(sidecar, ["dog"], model="m1", tags=[("dog", 0.5)], made=("a.jpg", record))
    book = ledger.read_ledger(sidecar)
    assert book.model == "m1" and book.tags == [("dog", 0.5)] and book.made == {"a.jpg": record}

    def reason(**changes: object) -> str | None:
        return ledger.retag_reason(
            book, "a.jpg", ledger.fingerprint(photo, book.made["a.jpg"]), changes.get("model", "m1"),
            {**settings, **changes.get("settings", {})},  # type: ignore[dict-item]
        )  # fmt: skip

    assert reason() is None
    os.utime(photo, ns=(1, 1))  # touched: same bytes, other mtime
    assert reason() is None
    assert reason(model="m2") == "model changed"
    assert reason(settings={"top_k": 5}) == "settings changed (top_k 10 -> 5)"
    Image.fromarray(_picture(seed=2)).save(photo)  # another picture under the same name
    assert reason() == "photo changed"
    older = tmp_path / "old.jpg.xmp"  # a sidecar of tagan before the made-from ledger
    sidecars.merge_keywords(older, ["kite"], model="m1")
    assert (
        ledger.retag_reason(ledger.read_ledger(older), "old.jpg", None, "m1", settings)
        == "made by an older tagan"
    )


# --------------------------------------------------------------------------------------------- the real CLI
def tag_cmd(bundle: Path, *args: str) -> list[str]:  # noqa: F811
    return [sys.executable, str(ROOT / "cli.py"), "tag", "--model", str(bundle), "--write-xmp", "--workers", "0",
            "--format", "jsonl", *args]  # fmt: skip


def records(stdout: str) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, stdout.splitlines())}


@pytest.mark.slow
def test_two_tagan_runs_and_an_external_writer_at_once_lose_no_keyword(tmp_path: Path, bundle: Path) -> None:  # noqa: F811
    """Two `tagan tag --write-xmp` processes (other seeds: each re-tags what the other wrote) and a thread
    writing a new keyword into every sidecar over and over through the library, over the same photos, 3 rounds:
    after each round every keyword any of them wrote is there. (Without the lock and the compare-before-rename,
    TAGAN_NO_LOCK in a scratch build, this lost keywords in every round.)"""
    folder = tmp_path / "album"
    folder.mkdir()
    names = [f"p{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        Image.fromarray(_picture(seed=40 + i)).save(folder / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wrote: dict[str, set[str]] = {name: set() for name in names}
    for round_ in range(3):
        stop = threading.Event()

        def external(round_: int = round_, stop: threading.Event = stop) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                for name in names:
                    word = f"person-{round_}-{i}"  # each write its own keyword: any write lost shows
                    sidecars.merge_keywords(folder / f"{name}.xmp", [word], root="")
                    wrote[name].add(word)
                time.sleep(0.005)

        thread = threading.Thread(target=external)
        thread.start()
        seeds = (2 * round_ + 1, 2 * round_ + 2)
        procs = [subprocess.Popen(tag_cmd(bundle, "--seed", str(seed), str(folder)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for seed in seeds]  # fmt: skip
        outs = [p.communicate(timeout=300) for p in procs]
        stop.set()
        thread.join()
        for proc, (out, err) in zip(procs, outs):
            assert proc.returncode == cli.EXIT_OK, err
            for name, rec in records(out).items():
                assert rec["status"] == "ok", rec  # a new seed each run: settings changed (or new)
                wrote[name] |= {t["tag"] for t in rec["tags"]}
        lost = {name: wrote[name] - set(xmp.read_keywords(folder / f"{name}.xmp")) for name in names}
        assert not any(lost.values()), (round_, lost)
    assert not list(folder.glob(".*"))


@pytest.mark.slow
def test_skips_know_what_changed_and_a_killed_runs_temp_files_go(tmp_path: Path, bundle: Path) -> None:  # noqa: F811
    folder = tmp_path / "album"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        Image.fromarray(_picture(seed=60 + i)).save(folder / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def tag(*args: str) -> dict[str, dict]:
        proc = subprocess.run(
            tag_cmd(bundle, *args, str(folder)), capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode == cli.EXIT_OK, proc.stderr
        return records(proc.stdout)

    first = tag()
    assert {n: (r["status"], r.get("retag")) for n, r in first.items()} == {n: ("ok", None) for n in first}
    # a run killed with -9 mid-write leaves its temp file: the next run in that folder removes it
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (folder / f".a.jpg.xmp.tagan-{int(dead.stdout)}-0123abcd.tmp").write_text("<x:xmpmeta")
    Image.fromarray(_picture(seed=99)).save(folder / "b.jpg")  # another picture under the same name
    second = tag()
    assert second["a.jpg"]["status"] == "cached" and second["c.jpg"]["status"] == "cached"
    assert (second["b.jpg"]["status"], second["b.jpg"]["retag"]) == ("ok", "photo changed")
    before, now = ({t["tag"] for t in run["b.jpg"]["tags"]} for run in (first, second))
    kept = set(xmp.read_keywords(folder / "b.jpg.xmp"))
    assert now <= kept and not (before - now) & kept  # the other picture's tagan keywords are gone
    assert not list(folder.glob(".*"))
    third = tag("--top-k", "3")
    assert {r["retag"] for r in third.values()} == {"settings changed (top_k 10 -> 3)"}
    assert all(len(r["tags"]) <= 3 for r in third.values())
    table = run_cli("tag", "--model", str(bundle), "--write-xmp", "--workers", "0", "--format", "table", "--top-k",
                    "2", str(folder / "a.jpg"))  # fmt: skip
    assert "ok (retag: settings changed (top_k 3 -> 2))" in table.stdout, table.stderr
    fourth = tag("--top-k", "3")  # unchanged photos under unchanged settings stay cached
    assert {n: r["status"] for n, r in fourth.items()} == {
        "a.jpg": "ok",
        "b.jpg": "cached",
        "c.jpg": "cached",
    }


def test_made_ledger_of_a_photo_whose_name_is_not_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9 \n.jpg")  # Latin-1 bytes and a newline: a surrogate escape in Python
    sidecar = tmp_path / "x.jpg.xmp"
    sidecars.merge_keywords(sidecar, ["dog"], model="m1", made=(name, {"size": 1}))
    assert ledger.read_ledger(sidecar).made == {name: {"size": 1}}
    sidecar.read_text(encoding="utf-8")  # valid UTF-8


def test_a_replaced_photo_s_earlier_tagan_keywords_are_replaced_not_merged(tmp_path: Path) -> None:
    """They described another picture: replace-own for "photo changed" (the person's keywords stay), append else."""
    from tagan.photos.records import Record
    from tagan.photos.session import TagOptions, _mode

    sidecar = tmp_path / "b.jpg.xmp"
    sidecar.write_text(DIGIKAM)  # the person's keywords: Beach, Anna, dog
    sidecars.merge_keywords(
        sidecar, ["coffee", "espresso"], model="m1", tags=[("coffee", 0.5), ("espresso", 0.3)]
    )
    rec = Record(tmp_path / "b.jpg", tags=[("cat", 0.6)], retag="photo changed")
    assert _mode(rec, TagOptions()) == "replace-own"
    other = Record(tmp_path / "b.jpg", tags=[], retag="settings changed (top_k 10 -> 3)")
    assert _mode(other, TagOptions()) == "append"
    sidecars.merge_keywords(sidecar, ["cat"], model="m1", tags=rec.tags, mode=_mode(rec, TagOptions()))
    assert set(xmp.read_keywords(sidecar)) == {"Beach", "Anna", "dog", "cat"}
