"""Hostile inputs through the real CLI: 0 crashes, 0 hangs, 0 modified photos, every photo-like file accounted for.

The corpus holds the formats of real photo folders (HEIC, AVIF, RAW with and without a JPEG twin), special files
named like photos (FIFO, socket, device, symlinks to them, dangling and looping links), broken and lying files
(empty, truncated, random bytes, a PNG named .jpg, text named .heic, decompression bombs by header), and odd names
(unicode, newline, undecodable bytes, a leading dash). Each kind is one entry of `make_corpus`'s answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from tagan.readers.images import ImageError, load_image
from tests.helpers import without_root_privileges
from tests.photo_fixtures import make_avif, make_dng, make_heic, picture

ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 1_000_000  # the test bundle's decompression-bomb guard (info.json max_pixels)
OK, ANY = "ok", "any"  # expected outcomes besides "skipped: <reason fragment>"


def _jpeg(rgb: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 header claims width x height (a decompression bomb by its header)."""
    data = bytearray(_jpeg(picture(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_declaring(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def make_corpus(root: Path, outside: Path) -> dict[str, tuple[str, str]]:
    """Write the corpus under `root`; returns kind -> (name relative to root as cli.shown prints it, expected)."""
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    rgb = picture()
    kinds: dict[str, tuple[str, str]] = {}

    def put(kind: str, name: str | bytes, data: bytes | None, expected: str) -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
        if data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        kinds[kind] = (cli.shown(path.relative_to(root)), expected)
        return path

    # formats of real folders
    make_heic(put("heic from a phone", "phone.heic", None, OK), rgb)
    make_avif(put("avif", "web.avif", None, OK), rgb)
    make_dng(put("raw with a JPEG twin", "IMG_1.DNG", None, OK), rgb)
    put("the twin JPEG", "IMG_1.JPG", _jpeg(rgb), OK)
    make_dng(put("raw alone (embedded preview)", "IMG_2.dng", None, OK), picture(seed=2), orientation=6)
    make_dng(put("raw without a preview (demosaic)", "IMG_3.dng", None, OK), rgb, preview=False)
    put("a JPEG named .CR2", "IMG_4.CR2", _jpeg(rgb), OK)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    put("a PNG named .jpg", "png_inside.jpg", png.getvalue(), OK)
    frames = [Image.fromarray(picture(seed=s)) for s in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    put("an animated GIF", "anim.gif", gif.getvalue(), OK)
    exif = _jpeg(rgb)
    put(
        "malformed EXIF",
        "bad_exif.jpg",
        exif[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff" + exif[2:],
        OK,
    )
    line = io.BytesIO()
    Image.new("RGB", (3000, 1), (200, 10, 10)).save(line, "PNG")
    put("extreme aspect ratio (3000x1)", "line.png", line.getvalue(), OK)
    # special files named like photos: refused without opening them for reading
    os.mkfifo(put("a FIFO named .jpg", "fifo.jpg", None, "skipped: not a regular file (a FIFO)"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(put("a socket named .jpg", "sock.jpg", None, "skipped: not a regular file (a socket)")))
    sock.close()  # the socket file stays
    os.symlink(
        "/dev/zero",
        put("a symlink to a device", "zero.jpg", None, "skipped: not a regular file (a character"),
    )
    os.mkfifo(outside / "pipe")
    os.symlink(
        outside / "pipe",
        put("a symlink to a FIFO", "pipe_link.jpg", None, "skipped: not a regular file (a FIFO)"),
    )
    os.symlink(
        outside / "nowhere.jpg", put("a dangling symlink", "dangling.jpg", None, "skipped: cannot read file")
    )
    os.symlink("loop.jpg", put("a symlink to itself", "loop.jpg", None, "skipped: cannot read file"))
    # broken or lying content
    put("a zero-byte JPEG", "empty.jpg", b"", "skipped: empty file")
    put("a zero-byte RAW", "empty.CR3", b"", "skipped: empty file")
    put("a truncated JPEG", "cut.jpg", _jpeg(picture(200, 300))[:1500], "skipped: corrupt or truncated")
    heic = io.BytesIO()
    Image.fromarray(rgb).save(heic, "HEIF")
    put("a truncated HEIC", "cut.heic", heic.getvalue()[: len(heic.getvalue()) // 2], "skipped: ")
    dng = root / "IMG_1.DNG"
    put("a truncated RAW", "cut.nef", dng.read_bytes()[:600], "skipped: ")
    put(
        "random bytes named .ARW",
        "noise.ARW",
        np.random.default_rng(0).bytes(8192),
        "skipped: not an image or RAW",
    )
    put("a text file named .heic", "notes.heic", b"shopping list: milk\n", "skipped: not an image")
    put("a text file named .jpg", "notes.jpg", b"not a picture\n", "skipped: not an image")
    put("an unsupported photo format", "scan.jxl", b"\xff\x0a not decoded", "skipped: unsupported format")
    # decompression bombs (by header; nothing large is ever allocated)
    put("a PNG bomb", "bomb.png", _png_declaring(100_000, 100_000), "skipped: too large")
    put("a JPEG bomb", "bomb.jpg", _jpeg_declaring(60_000, 60_000), "skipped: too large")
    make_heic(put("an HEIC over max_pixels", "big.heic", None, "skipped: too large"), picture(1000, 1100))
    # odd names
    put("unicode name (NFD, CJK, emoji)", "e\u0301te\u0301 写真 📷.jpg", _jpeg(rgb), OK)
    put("a newline in the name", "new\nline.jpg", _jpeg(rgb), OK)
    put("undecodable name bytes", b"\xff\xfe latin1 \xe9.jpg", _jpeg(rgb), OK)
    put("a leading dash", "-rf.jpg", _jpeg(rgb), OK)
    put("a folder named .jpg", "album.jpg/inside.jpg", _jpeg(rgb), OK)
    # permissions: root reads everything, others get a reason (either way: no crash, nothing lost)
    locked = put("an unreadable file", "locked.jpg", _jpeg(rgb), ANY)
    locked.chmod(0)
    closed = put("an unlistable folder", "closed/inner.jpg", _jpeg(rgb), ANY)
    closed.parent.chmod(0)
    # the same photo twice: a symlink to it is not a second photo
    os.symlink("web.avif", root / "alias.avif")
    kinds["the same photo through a symlink"] = (kinds["avif"][0], OK)
    return kinds


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root (symlinks and special files skipped, unreadable folders too)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                out[str(path)] = "unreadable"
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> Iterator[tuple[Path, dict[str, tuple[str, str]]]]:
    root = tmp_path / "corpus"
    kinds = make_corpus(root, tmp_path / "outside")
    yield root, kinds
    (root / "closed").chmod(0o755)  # let pytest clean up
    (root / "locked.jpg").chmod(0o644)


N_KINDS = 37  # make_corpus's entries: a kind whose name repeats another's would silently replace it


def test_corpus_kinds_each_load_as_expected_and_load_image_never_blocks(corpus: tuple[Path, dict]) -> None:
    """Every kind is on disk and listed once (the symlinked twin of a photo is not a second photo), and
    load_image gives each its expected outcome: an image within the size asked for, or the reason the CLI
    reports; an alarm fails any read that blocks."""
    root, kinds = corpus
    assert len(kinds) == N_KINDS, sorted(kinds)
    names = {name for name, _ in kinds.values()}
    assert len(names) == N_KINDS - 1  # only "the same photo through a symlink" shares its photo's name
    unprivileged_only = {name for name, expected in kinds.values() if expected == ANY}
    before = hashes(root)
    outcomes: dict[str, str] = {}
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load_image blocked"))
    try:
        for path in cli.iter_photos([root], on_error=lambda *_: None):
            name = cli.shown(Path(path).relative_to(root))
            assert name not in outcomes, f"{name} listed twice"
            signal.alarm(120)  # a hang guard (a blocked open), generous for a busy machine
            try:
                image = load_image(path, 320, max_pixels=MAX_PIXELS)
                assert max(image.size) <= 320, (name, image.size)
                outcomes[name] = OK
            except ImageError as e:
                outcomes[name] = f"skipped: {e}"
            finally:
                signal.alarm(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert set(outcomes) - unprivileged_only == names - unprivileged_only
    for kind, (name, expected) in kinds.items():
        if expected == ANY:
            continue
        got = outcomes[name]
        assert got == OK if expected == OK else got.startswith(expected), (kind, got)
    assert hashes(root) == before  # nothing read was modified


def _bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_cli import make_bundle

    bundle = make_bundle(tmp_path_factory.mktemp("hostile_bundle"))
    info = json.loads((bundle / "info.json").read_text())
    # a low bomb guard, so that a small HEIC can stand for a huge one
    info["features"]["max_pixels"] = MAX_PIXELS
    (bundle / "info.json").write_text(json.dumps(info))
    return bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundle(tmp_path_factory)


def run_tag(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    cmd = [sys.executable, str(ROOT / "cli.py"), "tag", "--model", str(bundle), "--format", "jsonl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)  # a hang fails here


@pytest.mark.slow
def test_hostile_corpus_through_the_cli(corpus: tuple[Path, dict], bundle: Path) -> None:
    root, kinds = corpus
    before = hashes(root)
    names_before = sorted(os.listdir(root))
    # the folder, plus overlapping arguments: a file inside it and the folder again through a trailing slash
    proc = run_tag(bundle, "--workers", "1", str(root), str(root / "IMG_1.JPG"), f"{root}/")
    assert proc.returncode == cli.EXIT_SKIPPED, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    by_name = {}
    for rec in records:
        rel = rec["path"][len(cli.shown(root)) + 1 :]
        assert rel not in by_name, f"{rel} tagged twice"
        by_name[rel] = rec
    for kind, (name, expected) in kinds.items():
        if expected == ANY and os.geteuid() != 0 and name not in by_name:
            name = name.split("/")[0]  # an unlistable folder is reported by its own name
        assert name in by_name, (kind, name, sorted(by_name))
        status = by_name[name]["status"]
        if expected == OK:
            assert status == "ok" and by_name[name]["tags"], (kind, by_name[name])
        elif expected != ANY:
            assert status.startswith(expected), (kind, status)
    assert by_name["IMG_1.DNG"]["features_from"].endswith("IMG_1.JPG")  # the twin was decoded once, reused
    assert by_name["IMG_1.DNG"]["tags"] == by_name["IMG_1.JPG"]["tags"]
    assert "alias.avif" not in by_name  # the same photo through a symlink: once
    assert (
        hashes(root) == before and sorted(os.listdir(root)) == names_before
    )  # nothing modified, nothing new

    # with --write-xmp: the photos are still untouched; sidecars appear only beside tagged photos
    proc = run_tag(bundle, "--workers", "0", "--write-xmp", str(root))
    assert proc.returncode == cli.EXIT_SKIPPED and "Traceback" not in proc.stderr, proc.stderr
    after = hashes(root)
    assert {p: h for p, h in after.items() if not p.endswith(".xmp")} == before
    written = {p for p in after if p.endswith(".xmp")}
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    tagged = {r["sidecar"] for r in records if r["status"] == "ok"}
    assert {cli.shown(p) for p in written} == tagged
    assert all(not r.get("sidecar") for r in records if r["status"].startswith("skipped"))
    assert (root / "IMG_1.DNG.xmp").is_file() and (root / "IMG_1.JPG.xmp").is_file()  # each its own sidecar


@pytest.mark.slow
def test_unreadable_file_and_unlistable_folder_as_an_unprivileged_user(tmp_path: Path, bundle: Path) -> None:
    """File permissions bind the CLI (as root: run without root's capabilities): each refusal is reported."""
    photos = tmp_path / "photos"
    (photos / "closed").mkdir(parents=True)
    for path in (photos / "ok.jpg", photos / "locked.jpg", photos / "closed" / "inner.jpg"):
        path.write_bytes(_jpeg(picture()))
    (photos / "locked.jpg").chmod(0)
    (photos / "closed").chmod(0)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [sys.executable, str(ROOT / "cli.py"), "tag", "--model", str(bundle), "--format", "jsonl",
               "--runtime", "torch", "--workers", "0", str(photos)]  # fmt: skip
        proc = subprocess.run(
            without_root_privileges(cmd), capture_output=True, text=True, env=env, timeout=240
        )
        assert proc.returncode == cli.EXIT_SKIPPED and "Traceback" not in proc.stderr, proc.stderr
        status = {Path(r["path"]).name: r["status"] for r in map(json.loads, proc.stdout.splitlines())}
        assert status["ok.jpg"] == "ok"
        assert status["locked.jpg"].startswith("skipped: cannot read file (Permission denied")
        assert status["closed"].startswith("skipped: cannot list folder (Permission denied")
    finally:
        (photos / "closed").chmod(0o755)
        (photos / "locked.jpg").chmod(0o644)
