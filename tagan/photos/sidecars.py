"""XMP sidecars, written: merge tagan's keywords in and take them out again without losing anyone's edits.

Every edit runs read -> merge in memory -> write a temp file -> rename, under a lock that every tagan process
takes (an flock on the sidecar's folder: nothing is created, so read-only folders and snapshots stay as they
were). Just before the rename the file on disk is compared with what was read (inode, size, mtime, ctime and
the bytes): when another program (digiKam, exiftool) changed it meanwhile, the temp file is dropped and the
edit starts again from the new file, at most MAX_ATTEMPTS times. Temp files are named
`.NAME.tagan-PID-RANDOM.tmp`; those a killed run left behind are removed by the next run in that folder.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tagan.photos.discovery import first_time
from tagan.photos.xmp_edit import EditDoc, Mode, PathOf, XmpChange, edit_packet, minimal_root
from tagan.readers.xmp import NS, XmpError, decode_packet, parse_packet, read_sidecar_bytes, sidecar_path

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8  # reads of a sidecar another program keeps changing before tagan gives up on it
LOCK_TIMEOUT_S = 60.0  # a tagan holds a folder's lock for one sidecar's read-merge-rename (milliseconds)
STALE_TEMP_S = 60.0  # a temp file of tagan's older than this (or whose writer died) is left over from a kill
_TEMP = re.compile(r"\A\..+\.tagan-(\d+)-[0-9a-f]{8}\.tmp\Z", re.S)
_XML_DECL = re.compile(r"<\?xml\s.*?\?>", re.S)
_swept: set[Path] = set()  # folders whose stale temp files this process removed already


class SidecarChangedError(OSError):
    """Another program kept changing the sidecar between tagan's read and its rename; left as it was."""


# --------------------------------------------------------------------------------------------- lock and temps
@contextmanager
def folder_lock(folder: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the sidecar lock of `folder` (an exclusive flock on the folder itself) while the body runs.

    Every tagan process takes it around each sidecar edit. Where the folder cannot be opened or the file
    system has no flock (some network mounts), the edit goes on unlocked: the compare-before-rename still
    keeps other writers' changes.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(
                        errno.EAGAIN, f"another tagan held the folder's lock for {timeout:.0f} s", str(folder)
                    ) from None
                time.sleep(0.005)
            except OSError:  # ENOLCK, EOPNOTSUPP, EBADF (NFS): no lock here
                break
        yield
    finally:
        os.close(fd)  # releases the flock


def temp_name(sidecar: Path) -> Path:
    """`.NAME.tagan-PID-RANDOM.tmp` beside the sidecar: hidden, and whose writer it was can be told."""
    return sidecar.with_name(f".{sidecar.name}.tagan-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def sweep_stale_temps(folder: Path, *, older_than: float = STALE_TEMP_S) -> list[Path]:
    """Remove the temp files of tagan's naming in `folder` that a killed run left (writer dead, or old); which."""
    gone = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp")]
    except OSError:
        return gone
    now = time.time()
    for name in names:
        match = _TEMP.match(name)
        if match is None:
            continue
        path = Path(folder) / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (not _alive(int(match.group(1))) or now - st.st_mtime > older_than):
            with suppress(OSError):
                path.unlink()
                gone.append(path)
    if gone:
        log.info("%s: removed %d temp files a killed tagan run left", folder, len(gone))
    return gone


def sweep_once(folder: Path) -> None:
    """sweep_stale_temps for each folder once per process."""
    key = Path(os.path.abspath(folder))
    if key not in _swept:
        _swept.add(key)
        sweep_stale_temps(key)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


# --------------------------------------------------------------------------------------------- editing
def _identity(path: Path) -> tuple[int, ...] | None:
    """What tells one version of a file from another without reading it; None when there is no file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def edit_sidecar(
    sidecar: Path,
    keywords: Iterable[str] = (),
    *,
    mode: Mode = "append",
    path_of: PathOf | None = None,
    root: str = "tagan",
    model: str | None = None,
    tags: list[tuple[str, float]] | None = None,
    made: tuple[str, dict[str, Any]] | None = None,
    dry_run: bool = False,
) -> XmpChange:
    """Add `keywords` (mode append), swap tagan's own for them (replace-own) or only remove tagan's (remove-own).

    Person keywords are never removed: a value counts as tagan's only when tagan's ledger lists it, and a value
    already present (case-insensitively) is never added nor claimed. made: (photo name, what its tags were made
    from), recorded in the made-from ledger. Locked, compared before the rename, atomic; keeps the file mode.
    """
    sidecar = Path(sidecar)
    keywords = list(keywords)
    if dry_run:
        change, _, _ = _edit_in_memory(sidecar, keywords, mode, path_of, root, model, tags, made)
        return change
    with folder_lock(sidecar.parent):
        sweep_once(sidecar.parent)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            before = _identity(sidecar)
            change, action, write = _edit_in_memory(sidecar, keywords, mode, path_of, root, model, tags, made)
            change.attempts = attempt
            if action == "none":
                return change
            _check_writable(sidecar)
            if action == "delete":
                if _identity(sidecar) == before and read_sidecar_bytes(sidecar) == write[0]:
                    os.unlink(sidecar)
                    change.written = True
                    return change
                continue
            if _write_if_unchanged(sidecar, before, *write):
                change.written = True
                if attempt > 1:
                    log.info("%s: changed by another program while tagan merged; merged again", sidecar)
                return change
    raise SidecarChangedError(
        errno.EBUSY, f"another program kept changing it ({MAX_ATTEMPTS} tries); left as it was", str(sidecar)
    )


def _edit_in_memory(
    sidecar: Path, keywords: list[str], mode: Mode, path_of: PathOf | None, root: str,
    model: str | None, tags: list[tuple[str, float]] | None, made: tuple[str, dict[str, Any]] | None,
) -> tuple[XmpChange, str, tuple[bytes | None, ET.Element, dict[str, str], str]]:  # fmt: skip
    """Read the sidecar and edit it in memory: (change, action, (bytes read, edited root, prefixes, text))."""
    data = read_sidecar_bytes(sidecar)
    created = data is None
    if created and mode == "remove-own":
        return XmpChange(sidecar, created=False), "none", (data, minimal_root(), {}, "")
    if data is None:
        root_elem, prefixes, text = minimal_root(), {}, ""
    else:
        text = decode_packet(data, sidecar)
        root_elem, prefixes = parse_packet(text, sidecar)
    doc = EditDoc(sidecar, root_elem)
    change, action = edit_packet(
        doc,
        keywords,
        created=created,
        mode=mode,
        path_of=path_of,
        root=root,
        model=model,
        tags=tags,
        made=made,
    )
    return change, action, (data, root_elem, prefixes, text)


def merge_keywords(
    sidecar: Path,
    keywords: list[str],
    *,
    model: str | None = None,
    tags: list[tuple[str, float]] | None = None,
    made: tuple[str, dict[str, Any]] | None = None,
    dry_run: bool = False,
    path_of: PathOf | None = None,
    root: str = "tagan",
    mode: Mode = "append",
) -> XmpChange:
    """Add `keywords` to the sidecar's keyword properties, keeping all other content (see edit_sidecar)."""
    return edit_sidecar(sidecar, keywords, mode=mode, path_of=path_of, root=root, model=model, tags=tags,
                        made=made, dry_run=dry_run)  # fmt: skip


def remove_own(sidecar: Path, *, dry_run: bool = False) -> XmpChange:
    """Remove exactly the keywords tagan added (its ledger) and its model marks; person keywords stay."""
    return edit_sidecar(sidecar, (), mode="remove-own", dry_run=dry_run)


# --------------------------------------------------------------------------------------------- writing
def _check_writable(path: Path) -> os.stat_result | None:
    """The sidecar's stat; PermissionError when a person made it read-only (even root respects that)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise PermissionError(
            13, "the sidecar is read-only; make it writable to let tagan change it", str(path)
        )
    return st


def _outside_root(text: str, path: Path) -> tuple[str, str]:
    """The text before and after the root element (packet wrapper, declaration, comments, padding), verbatim."""
    start = 0
    while True:
        at = len(text) - len(text[start:].lstrip()) if start < len(text) else start
        closer = "?>" if text.startswith("<?", at) else "-->" if text.startswith("<!--", at) else None
        if closer is None:
            break
        start = text.find(closer, at + 2) + len(closer)
    end = len(text)
    while True:
        at = len(text[:end].rstrip())
        opener = "<?" if text.endswith("?>", 0, at) else "<!--" if text.endswith("-->", 0, at) else None
        if opener is None:
            end = at
            break
        end = text.rfind(opener, start, at)
    if not re.search(r"(?:</[^<>]+|/)>\Z", text[start:end]):
        raise XmpError(f"{path}: cannot tell where the XMP packet ends; left untouched")
    return text[:start], text[end:]


def _serialize(path: Path, root: ET.Element, prefixes: dict[str, str], text: str, created: bool) -> str:
    """The edited packet with the file's own prefixes, prolog and epilog."""
    prolog = epilog = ""
    if not created:
        prolog, epilog = _outside_root(text, path)
        prolog = _XML_DECL.sub('<?xml version="1.0" encoding="UTF-8"?>', prolog, count=1)
    for prefix, uri in {**NS, **prefixes}.items():
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            ET.register_namespace(prefix, uri)
    if created:
        ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    if created:
        body = f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n{body}\n<?xpacket end="w"?>\n'
    return prolog + body + epilog


def _write_if_unchanged(
    path: Path, before: tuple[int, ...] | None, data: bytes | None, root: ET.Element, prefixes: dict[str, str],
    text: str,
) -> bool:  # fmt: skip
    """Write the edit to a temp file and rename it over `path` only if `path` is still what was read; whether."""
    content = _serialize(path, root, prefixes, text, data is None).encode("utf-8")
    st = _check_writable(path)
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            if st is not None and os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
                os.fchown(f.fileno(), st.st_uid, st.st_gid)  # root tagging a user's folder: the user keeps it
            os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) if st is not None else _umask_mode())
            os.fsync(f.fileno())
        if _identity(path) != before or (data is not None and read_sidecar_bytes(path) != data):
            tmp.unlink()
            return False
        os.replace(tmp, path)
        return True
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def sidecar_write_error(sidecar: Path, e: OSError) -> str:
    """One line saying why a sidecar could not be written and what fixes it."""
    folder = Path(sidecar).parent
    if isinstance(e, SidecarChangedError):
        return f"sidecar {sidecar}: {e.strerror}; run tagan again once the other program is done"
    try:
        mode = os.lstat(sidecar).st_mode
    except OSError:
        mode = None
    if mode is not None and not mode & 0o222:
        return f"sidecar {sidecar} is read-only, left untouched; make it writable (chmod u+w) to let tagan change it"
    if not os.access(folder, os.W_OK):
        return f"cannot write in folder {folder} (read-only), nothing changed; make the folder writable or drop --write-xmp"
    return f"cannot write sidecar {sidecar} ({e.strerror or e}); make it and its folder writable or drop --write-xmp"


# --------------------------------------------------------------------------------------------- untag
def iter_sidecars(paths: Iterable[Path]) -> Iterator[Path]:
    """Sidecars to untag: .xmp files given or under folders (recursively), and both sidecars of photos given."""
    seen: set[str] = set()

    def first(path: Path) -> bool:
        return first_time(seen, os.path.abspath(path))

    for root in map(Path, paths):
        if root.is_dir() and not root.is_symlink():
            for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if (
                        name.lower().endswith(".xmp")
                        and not name.startswith(".")
                        and first(Path(dirpath) / name)
                    ):
                        yield Path(dirpath) / name
        elif root.suffix.lower() == ".xmp":
            if first(root):
                yield root
        else:
            for style in ("ext", "stem"):
                sidecar = sidecar_path(root, style)
                if os.path.lexists(sidecar) and first(sidecar):
                    yield sidecar


def untag_one(sidecar: Path, dry_run: bool) -> dict[str, Any]:
    """Remove tagan's own keywords from one sidecar; a record of what went (or would go)."""
    rec: dict[str, Any] = {"sidecar": str(sidecar), "status": "ok", "removed": [], "properties": {}}
    try:
        change = remove_own(sidecar, dry_run=dry_run)
    except XmpError as e:
        rec["status"] = f"skipped: left untouched: {e}"
        return rec
    except OSError as e:
        rec["status"] = f"skipped: {sidecar_write_error(sidecar, e)}"
        return rec
    removed = {k: v["remove"] for k, v in change.properties.items() if v["remove"]}
    rec["removed"], rec["properties"] = change.removed, removed
    if not removed:
        rec["status"] = "unchanged"
    elif change.deleted:
        rec["status"] = "deleted" if not dry_run else "would delete"
    return rec
