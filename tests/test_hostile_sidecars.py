"""Hostile sidecars: every kind below is tagged and untagged with 0 crashes, 0 hangs, 0 changed person fields.

Each kind either is refused (XmpError / PermissionError: the file, link or folder stays exactly as it was) or is
edited (every fact that is not one of tagan's keyword values stays, and untag restores the original facts).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from PIL import Image

import cli
from tagan.photos import sidecars
from tagan.readers import xmp
from tests.helpers import without_root_privileges
from tests.test_cli import bundle  # noqa: F401  (the session fixture)
from tests.xmp_fixtures import DARKTABLE, DIGIKAM, KEYWORD_PROPERTIES, LIGHTROOM, only, rdf_facts, without

ROOT = Path(__file__).resolve().parents[1]
HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="2">'
)
TAIL = "</rdf:Description></rdf:RDF></x:xmpmeta>"
SUBJECT = "<dc:subject><rdf:Bag><rdf:li>sea</rdf:li><rdf:li>Anna</rdf:li></rdf:Bag></dc:subject>"
PLAIN = HEAD + SUBJECT + TAIL
LOL = (  # the classic billion laughs: lol9 expands to 10**9 "lol"s
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]>"
)


def _text(body: str | bytes) -> Callable[[Path], None]:
    data = body if isinstance(body, bytes) else body.encode("utf-8")
    return lambda p: p.write_bytes(data)


def _sparse(p: Path) -> None:
    with open(p, "wb") as f:  # 33 MiB, mostly a hole: larger than any sidecar
        f.write(PLAIN.encode())
        f.truncate(33 << 20)


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


def _dir(p: Path) -> None:
    p.mkdir()
    (p / "inside.txt").write_text("a folder named like a sidecar")


def _link_elsewhere(p: Path) -> None:
    elsewhere = p.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "shared.xmp").write_text(PLAIN)
    os.symlink(elsewhere / "shared.xmp", p)


def _dangling(p: Path) -> None:
    os.symlink(p.parent / "nowhere" / "gone.xmp", p)


def _dev_zero(p: Path) -> None:
    os.symlink("/dev/zero", p)


def _read_only(p: Path) -> None:
    p.write_text(DIGIKAM)
    os.chmod(p, 0o444)


# kind -> (how to make the sidecar, expected: "refuse" leaves everything as it was, "edit" keeps person facts)
KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated XML": (_text(DIGIKAM[:900]), "refuse"),
    "not XML at all": (_text("this is not a sidecar\n"), "refuse"),
    "empty file": (_text(b""), "refuse"),
    "binary NUL bytes": (_text(b"\0" * 4096), "refuse"),
    "NUL inside valid XMP": (_text(PLAIN.replace("sea", "s\0ea")), "refuse"),
    "latin-1 bytes, no declaration": (_text(PLAIN.replace("Anna", "café").encode("latin-1")), "refuse"),
    "declared ISO-8859-1, non-ASCII": (
        _text(
            ('<?xml version="1.0" encoding="ISO-8859-1"?>' + PLAIN.replace("Anna", "café")).encode("latin-1")
        ),
        "refuse",
    ),
    "declared ISO-8859-1, ASCII only": (
        _text('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + PLAIN),
        "edit",
    ),
    "UTF-16 with BOM": (_text(PLAIN.encode("utf-16")), "refuse"),
    "UTF-8 BOM": (_text(b"\xef\xbb\xbf" + PLAIN.encode()), "edit"),
    "huge file (33 MiB)": (_sparse, "refuse"),
    "large real sidecar (30k keywords)": (
        _text(
            HEAD
            + "<dc:subject><rdf:Bag>"
            + "".join(f"<rdf:li>kw{i}</rdf:li>" for i in range(30000))
            + "</rdf:Bag></dc:subject>"
            + TAIL
        ),  # fmt: skip
        "edit",
    ),
    "billion laughs": (
        _text(LOL + HEAD + "<dc:subject><rdf:Bag><rdf:li>&lol9;</rdf:li></rdf:Bag></dc:subject>" + TAIL),
        "refuse",
    ),
    "XXE external entity": (
        _text(
            '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + HEAD
            + "<dc:subject><rdf:Bag><rdf:li>&xxe;</rdf:li></rdf:Bag></dc:subject>"
            + TAIL
        ),  # fmt: skip
        "refuse",
    ),
    "external DTD": (_text('<!DOCTYPE x:xmpmeta SYSTEM "http://example.invalid/x.dtd">' + PLAIN), "refuse"),
    "quadratic blowup entity": (
        _text(
            f'<!DOCTYPE x [<!ENTITY a "{"x" * 50000}">]>'
            + HEAD
            + "<dc:subject><rdf:Bag><rdf:li>"
            + "&a;" * 5000
            + "</rdf:li></rdf:Bag></dc:subject>"
            + TAIL
        ),  # fmt: skip
        "refuse",
    ),
    "a folder named NAME.jpg.xmp": (_dir, "refuse"),
    "a FIFO": (_fifo, "refuse"),
    "a unix socket": (_socket, "refuse"),
    "symlink to a sidecar elsewhere": (_link_elsewhere, "refuse"),
    "dangling symlink": (_dangling, "refuse"),
    "symlink to /dev/zero": (_dev_zero, "refuse"),
    "read-only sidecar": (_read_only, "refuse"),
    "duplicates inside bags": (
        _text(
            HEAD + "<dc:subject><rdf:Bag><rdf:li>sea</rdf:li><rdf:li>sea</rdf:li><rdf:li>dog</rdf:li>"
            "<rdf:li>dog</rdf:li></rdf:Bag></dc:subject>" + TAIL
        ),  # fmt: skip
        "edit",
    ),
    "read-only packet end=r with padding": (
        _text(
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            + PLAIN
            + "\n"
            + " " * 2048
            + '\n<?xpacket end="r"?>'
        ),  # fmt: skip
        "edit",
    ),
    "old packet begin='' single quotes": (
        _text("<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>" + PLAIN + "<?xpacket end='w'?>"),
        "edit",
    ),
    "dc:subject as rdf:Alt": (
        _text(
            HEAD
            + '<dc:subject><rdf:Alt><rdf:li xml:lang="x-default">sea</rdf:li></rdf:Alt></dc:subject>'
            + TAIL
        ),
        "refuse",
    ),
    "dc:subject as one literal": (
        _text(HEAD.replace('xmp:Rating="2"', 'xmp:Rating="2" dc:subject="sea"') + TAIL),
        "refuse",
    ),
    "dc:subject in two descriptions": (
        _text(
            HEAD + SUBJECT + '</rdf:Description><rdf:Description rdf:about="" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/">' + SUBJECT + TAIL
        ),  # fmt: skip
        "refuse",
    ),
    "struct inside a keyword bag": (
        _text(
            HEAD
            + '<dc:subject><rdf:Bag><rdf:li><rdf:Description xmp:Label="x"/></rdf:li></rdf:Bag></dc:subject>'
            + TAIL
        ),  # fmt: skip
        "refuse",
    ),
    "malformed tagan ledger": (
        _text(
            HEAD.replace(
                "xmp:Rating",
                'xmlns:tagan="https://github.com/tagan/xmp/1.0/" tagan:addedSubject="sea" xmp:Rating',
            )
            + SUBJECT
            + TAIL
        ),  # fmt: skip
        "refuse",
    ),
    "XML that is not XMP": (_text('<svg xmlns="http://www.w3.org/2000/svg"><metadata/></svg>'), "refuse"),
    "typed node in rdf:RDF": (
        _text(
            PLAIN.replace(
                TAIL,
                '</rdf:Description><cc:Work xmlns:cc="http://creativecommons.org/ns#" '
                'rdf:about=""/></rdf:RDF></x:xmpmeta>',
            )
        ),  # fmt: skip
        "refuse",
    ),
    "nested 500 levels deep": (
        _text(HEAD + '<xmp:x rdf:parseType="Resource">' * 500 + "</xmp:x>" * 500 + TAIL),
        "refuse",
    ),
    "properties split over descriptions": (
        _text(
            HEAD + SUBJECT + '</rdf:Description><rdf:Description rdf:about="" '
            'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="Brest">' + TAIL
        ),  # fmt: skip
        "edit",
    ),
    "prefixes lr and tagan bound to other URIs": (
        _text(
            HEAD.replace(
                "xmp:Rating",
                'xmlns:lr="urn:not-lightroom" lr:mine="kept" xmlns:tagan="urn:someone" '
                'tagan:theirs="kept" xmp:Rating',
            )
            + SUBJECT
            + TAIL
        ),  # fmt: skip
        "edit",
    ),
    "old x:xapmeta root": (_text(PLAIN.replace("x:xmpmeta", "x:xapmeta")), "edit"),
    "CRLF line endings": (_text(DIGIKAM.replace("\n", "\r\n")), "edit"),
    "xml:lang qualifiers on keywords": (
        _text(HEAD + '<dc:subject><rdf:Bag><rdf:li xml:lang="fr">mer</rdf:li></rdf:Bag></dc:subject>' + TAIL),
        "edit",
    ),
    "markup characters and a 100k-char keyword": (
        _text(
            HEAD
            + "<dc:subject><rdf:Bag><rdf:li>R&amp;B &lt;live&gt; &quot;x&quot;</rdf:li><rdf:li>"
            + "w" * 100_000
            + "</rdf:li></rdf:Bag></dc:subject>"
            + TAIL
        ),  # fmt: skip
        "edit",
    ),
    "comments and processing instructions": (
        _text(
            "<!-- written by hand -->\n<?app data?>\n"
            + PLAIN.replace("<rdf:RDF", "<!-- inner --><rdf:RDF")
            + "\n<!-- trailing -->\n"
        ),  # fmt: skip
        "edit",
    ),
    "digiKam sidecar": (_text(DIGIKAM), "edit"),
    "darktable sidecar": (_text(DARKTABLE), "edit"),
    "Lightroom sidecar": (_text(LIGHTROOM), "edit"),
}
NAMES = {
    "unicode name": "Ωmega 🐕 e\u0301te\u0301 עברית.jpg.xmp",
    "newline in the name": "two\nlines.jpg.xmp",
}


@contextmanager
def deadline(seconds: int = 120) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body blocks, e.g. on opening a FIFO. A hang guard, not a speed
    test: generous, since a busy 2-core machine once took over 20 s for the 30k-keyword sidecar."""

    def hang(*_: object) -> None:
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: its type, mode, link target and bytes (regular files), not following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), link, data)
    return out


def check_edit(sidecar: Path, original: bytes) -> None:
    """Person facts unchanged after tagging; original facts back after untag."""
    before = rdf_facts(original)
    with deadline():
        change = sidecars.merge_keywords(sidecar, ["dog", "sea"], model="m1", tags=[("dog", 0.5)])
    after = rdf_facts(sidecar.read_bytes())
    assert without(after) == without(before)
    for prop in KEYWORD_PROPERTIES:
        assert not Counter(only(before, prop)) - Counter(only(after, prop))
    assert change.written and xmp.read_model(sidecar) == "m1"
    with deadline():
        sidecars.remove_own(sidecar)
    assert rdf_facts(sidecar.read_bytes()) == before


@pytest.mark.parametrize("kind", list(KINDS))
def test_hostile_sidecar(tmp_path: Path, kind: str) -> None:
    make, expected = KINDS[kind]
    sidecar = tmp_path / "IMG_0001.jpg.xmp"
    make(sidecar)
    state = snapshot(tmp_path)
    if expected == "refuse":
        t = time.monotonic()
        with deadline(), pytest.raises((xmp.XmpError, PermissionError)) as err:
            sidecars.merge_keywords(sidecar, ["dog"], model="m1")
        assert time.monotonic() - t < 10 and str(sidecar) in str(err.value)
        assert snapshot(tmp_path) == state  # not a byte, mode or link changed; no temp file left
        with (
            deadline(),
            suppress(xmp.XmpError, PermissionError),
        ):  # untag refuses, or finds nothing of tagan's
            assert not sidecars.remove_own(sidecar).written
        assert snapshot(tmp_path) == state
        assert xmp.read_model(sidecar) is None and xmp.read_tags(sidecar) == []  # readers never raise
    else:
        check_edit(sidecar, sidecar.read_bytes())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["IMG_0001.jpg.xmp"]


@pytest.mark.parametrize("kind", list(NAMES))
def test_odd_file_names(tmp_path: Path, kind: str) -> None:
    sidecar = tmp_path / NAMES[kind]
    sidecar.write_text(DIGIKAM, encoding="utf-8")
    check_edit(sidecar, sidecar.read_bytes())


def test_lightroom_and_digikam_sidecars_side_by_side(tmp_path: Path) -> None:
    """IMG.xmp (Lightroom) and IMG.NEF.xmp (digiKam) both present: tagan edits only the style asked for, and
    untag of the photo cleans whichever holds tagan's keywords."""
    photo = tmp_path / "IMG_7.NEF"
    photo.write_bytes(b"raw bytes")
    lightroom, digikam = xmp.sidecar_path(photo, "stem"), xmp.sidecar_path(photo, "ext")
    lightroom.write_text(LIGHTROOM, encoding="utf-8")
    digikam.write_text(DIGIKAM, encoding="utf-8")
    sidecars.merge_keywords(digikam, ["sea"], model="m1")
    assert lightroom.read_text(encoding="utf-8") == LIGHTROOM and "tagan/sea" in digikam.read_text(
        encoding="utf-8"
    )
    assert sorted(map(Path, sidecars.iter_sidecars([photo]))) == sorted([digikam, lightroom])
    assert cli.main(["untag", "--format", "jsonl", str(photo)]) == cli.EXIT_OK
    assert lightroom.read_text(encoding="utf-8") == LIGHTROOM
    assert rdf_facts(digikam.read_bytes()) == rdf_facts(DIGIKAM)
    assert photo.read_bytes() == b"raw bytes"


def test_untag_cli_over_the_whole_corpus_never_crashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tagan untag FOLDER` over every hostile kind at once: exit 1 (some skipped), no traceback, nothing moved."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i, (make, _) in enumerate(KINDS.values()):
        sub = folder / f"k{i:02d}"
        sub.mkdir()
        make(sub / "IMG.jpg.xmp")
    before = snapshot(folder)
    with deadline(120):
        code = cli.main(["untag", "--format", "jsonl", str(folder)])
    out = capsys.readouterr()
    assert code == cli.EXIT_SKIPPED and "Traceback" not in out.err
    assert snapshot(folder) == before  # nothing held tagan keywords: nothing changed
    assert "skipped" in out.out


@pytest.mark.slow
@pytest.mark.parametrize("style", ["ext", "stem"])
def test_tag_write_xmp_never_blocks_on_a_special_file_named_like_a_sidecar(
    tmp_path: Path,
    bundle: Path,  # noqa: F811
    style: str,
) -> None:
    """`tagan tag --write-xmp` (its cached-sidecar check reads the sidecar first) and `untag --dry-run`/`untag`
    beside a FIFO, a socket and a symlink to /dev/zero named like sidecars: each photo is skipped with the
    reason, nothing blocks (the subprocess has a timeout), the special files stay as they were."""
    from tests.test_cli import _picture

    folder = tmp_path / "album"
    folder.mkdir()
    specials = {"fifo.jpg": (_fifo, "a FIFO"), "sock.jpg": (_socket, "a socket"),
                "zero.jpg": (_dev_zero, "a symbolic link")}  # fmt: skip
    for name in [*specials, "fine.jpg"]:
        Image.fromarray(_picture(seed=len(name))).save(folder / name)
    for name, (make, _) in specials.items():
        make(xmp.sidecar_path(folder / name, style))
    before = snapshot(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tag = [sys.executable, str(ROOT / "cli.py"), "tag", "--model", str(bundle), "--write-xmp", "--xmp-style",
           style, "--workers", "0", "--format", "jsonl", str(folder)]  # fmt: skip
    proc = subprocess.run(tag, capture_output=True, text=True, env=env, timeout=240)  # a hang fails here
    assert proc.returncode == cli.EXIT_SKIPPED and "Traceback" not in proc.stderr, proc.stderr
    recs = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    for name, (_, kind) in specials.items():
        status = recs[name]["status"]
        assert status.startswith("skipped: existing sidecar left untouched") and kind in status, status
        assert recs[name]["tags"]  # the tags are still reported
    assert recs["fine.jpg"]["status"] == "ok"
    fine = xmp.sidecar_path(folder / "fine.jpg", style)
    assert {k: v for k, v in snapshot(folder).items() if k != fine.name} == before
    for args, gone in ((["--dry-run"], "would delete"), ([], "deleted")):
        untag = [sys.executable, str(ROOT / "cli.py"), "untag", "--format", "jsonl", *args, str(folder)]
        proc = subprocess.run(untag, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == cli.EXIT_SKIPPED and "Traceback" not in proc.stderr, proc.stderr
        status = {Path(r["sidecar"]).name: r["status"] for r in map(json.loads, proc.stdout.splitlines())}
        assert status.pop(fine.name) == gone
        assert sorted(status) == sorted(xmp.sidecar_path(Path(n), style).name for n in specials)
        assert all(s.startswith("skipped: left untouched") for s in status.values()), status
    assert snapshot(folder) == before  # fine.jpg's sidecar (tagan's alone) deleted, nothing else touched


def test_read_only_folder_one_clear_message_nothing_changed(tmp_path: Path) -> None:
    """File permissions bind the writer (as root: run without root's capabilities): one clear message each."""
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "a.jpg.xmp").write_text(DIGIKAM, encoding="utf-8")
    os.chmod(folder / "a.jpg.xmp", 0o644)
    os.chmod(folder, 0o555)
    try:
        code = (
            "import sys; from pathlib import Path; from tagan.photos import sidecars\n"
            "for name in ('a.jpg.xmp', 'b.jpg.xmp'):\n"
            "    p = Path(sys.argv[1]) / name\n"
            "    try: sidecars.merge_keywords(p, ['dog'], model='m1')\n"
            "    except OSError as e: print(sidecars.sidecar_write_error(p, e))\n"
        )
        cmd = without_root_privileges([sys.executable, "-c", code, str(folder)])
        before = snapshot(folder)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 2 and all("make the folder writable" in line for line in lines), lines
        assert all(str(folder) in line and "\n" not in line for line in lines)
        assert snapshot(folder) == before
    finally:
        os.chmod(folder, 0o755)


def test_corpus_size() -> None:
    """The corpus is what it says: 44 sidecar kinds (28 refused untouched, 16 edited), 2 odd names; a kind
    dropped or changing its expectation fails here."""
    assert Counter(expected for _, expected in KINDS.values()) == {"refuse": 28, "edit": 16}
    assert len(KINDS) == 44 and sorted(NAMES) == ["newline in the name", "unicode name"]
