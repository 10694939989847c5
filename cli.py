"""tagan: tag folders of photos with the trained conditional GAN and write the tags where photo tools read them.

Exit status: 0 every photo tagged (or already tagged by this model), 1 some photos skipped (unreadable,
corrupt, not an image, sidecar not writable), 2 usage or model errors, 3 internal error (a bug),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_MODEL_DIR = Path("data/tagger")  # relative to the working directory, else to this repository
BUILD_HINT = "build it with `make repro` (see the README), or pass --model DIR of another experiment"
# the methods a bundle holds (tagan.tagging.index.METHODS; kept here so --help needs no torch import)
METHODS = (
    "cgan", "cgan_open", "wordnet", "conse", "imagenet_names", "knn", "classifier", "cgan_strong_tuned",
    "cgan_strong", "cgan_paper_tuned", "cgan_paper", "regressor", "prior", "zeroshot",
)  # fmt: skip
FORMATS = ("table", "json", "jsonl", "csv")
# tagan.models.backbones.RUNTIMES (kept here so --help needs no torch import)
RUNTIMES = ("auto", "onnxruntime", "openvino", "torch")
log = logging.getLogger("tagan")

EPILOG = """\
exit status:
  0    every photo was tagged (or was already tagged by this model)
  1    some photos were skipped (unreadable, corrupt, not an image, sidecar not writable); see their status
  2    usage error, or the model is missing or unreadable
  3    unexpected internal error (a bug: please report it with the traceback)
  130  interrupted (Ctrl-C): no partial sidecar or output file is left behind
"""
UNTAG_EPILOG = """\
exit status:
  0    every sidecar was cleaned (or held no tagan keywords)
  1    some sidecars were skipped (malformed, read-only, not a regular file); see their status
  2    usage error
  130  interrupted (Ctrl-C): no partial sidecar is left behind
"""


# --------------------------------------------------------------------------------------------- finding photos
def iter_photos(
    paths: Iterable[Path],
    *,
    exclude: Iterable[str] = (),
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Photos under `paths` (files as given; folders recursively, photo suffixes only), each once, loop-safe.

    In a folder a RAW and its JPEG twin (IMG_1.CR2, IMG_1.JPG) come one after the other. A folder that cannot
    be listed is passed to `on_error(folder, reason)` (default: a warning) instead of being skipped silently.
    """
    from tagan.readers.images import PHOTO_SUFFIXES

    patterns = list(exclude)
    seen_files: set[str] = (
        set()
    )  # real paths: a file reached through symlinks is tagged once (hard links are distinct)
    seen_dirs: set[tuple[int, int]] = set()  # (device, inode) of folders walked: symlink loops end here

    def report(error: OSError) -> None:
        reason = f"cannot list folder ({error.strerror or error})"
        if on_error is None:
            log.warning("%s: %s", error.filename, reason)
        else:
            on_error(Path(error.filename), reason)

    def excluded(path: Path, root: Path) -> bool:
        rel = path.relative_to(root).as_posix() if path != root else path.name
        return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel, p) for p in patterns)

    def first_file(path: Path) -> bool:
        real = os.path.realpath(path)
        if real in seen_files:
            return False
        seen_files.add(real)
        return True

    def first_dir(path: Path) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return False
        seen_dirs.add(key)
        return True

    for root in paths:
        root = Path(root)
        if not root.is_dir():
            if not excluded(root, root) and first_file(root):
                yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=report):
            here = Path(dirpath)
            if not first_dir(here):  # a symlink loop or a folder reached twice
                dirnames[:] = []
                continue
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not excluded(here / d, root)
            )
            link = {n: os.path.islink(here / n) for n in filenames}
            # twins adjacent (IMG_1.CR2, IMG_1.JPG); symlinks last: a photo and a link to it report the photo
            for name in sorted(filenames, key=lambda n: (link[n], os.path.splitext(n)[0], n)):
                path = here / name
                if (
                    not name.startswith(".")
                    and path.suffix.lower() in PHOTO_SUFFIXES
                    and not excluded(path, root)
                    and first_file(path)
                ):
                    yield path


def twin_key(path: Path) -> tuple[Path, str]:
    """Photos with the same key are one shot in several files (IMG_1.CR2 + IMG_1.JPG): same folder and stem."""
    return path.parent, path.stem


def photo_chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    """Lists of about `size` consecutive paths (bounded memory) that never split a RAW from its twin."""
    chunk: list[Path] = []
    for path in paths:
        if len(chunk) >= size and twin_key(path) != twin_key(chunk[-1]):
            yield chunk
            chunk = []
        chunk.append(path)
    if chunk:
        yield chunk


def twin_sources(paths: list[Path]) -> dict[Path, Path]:
    """RAW path -> the JPEG/HEIC twin among `paths` whose decoded features it reuses (the twin is cheaper)."""
    from tagan.readers.images import IMAGE_SUFFIXES, RAW_SUFFIXES

    groups: dict[tuple[Path, str], list[Path]] = {}
    for path in paths:
        groups.setdefault(twin_key(path), []).append(path)
    plan = {}
    for group in groups.values():
        images = [p for p in group if p.suffix.lower() in IMAGE_SUFFIXES]
        if images:
            plan.update({p: images[0] for p in group if p.suffix.lower() in RAW_SUFFIXES})
    return plan


# --------------------------------------------------------------------------------------------- results
@dataclass
class Record:
    """The result for one photo: its tags with vote-share scores, and `ok`, `cached` or `skipped: <reason>`."""

    path: Path
    status: str = "ok"
    tags: list[tuple[str, float]] = field(default_factory=list)
    sidecar: Path | None = None
    xmp_added: list[str] | None = None  # keywords new to the sidecar (would be added, with --dry-run)
    xmp_change: Any = field(default=None, repr=False)  # the sidecar change (tagan.readers.xmp.XmpChange)
    source: Path | None = None  # the twin whose decoded features were reused (a RAW tagged from its JPEG)

    @property
    def skipped(self) -> bool:
        return self.status.startswith("skipped")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": shown(self.path),
            "status": self.status,
            "tags": [{"tag": t, "score": round(float(s), 4)} for t, s in self.tags],
        }
        if self.source is not None:
            d["features_from"] = shown(self.source)
        if self.sidecar is not None:
            d["sidecar"] = shown(self.sidecar)
            d["xmp_added"] = self.xmp_added or []
        return d


def shown(path: Path | str, *, one_line: bool = False) -> str:
    """A path as printable UTF-8 text: undecodable name bytes as \\xNN; with one_line, control characters escaped."""
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if one_line and not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text


class Writer:
    """Streams records to a text stream in one format (table, json, jsonl or csv)."""

    def __init__(self, stream: IO[str], fmt: str, *, dry_run: bool = False) -> None:
        self.stream, self.fmt, self.dry_run, self.count = stream, fmt, dry_run, 0
        if fmt == "csv":
            self.csv = csv.writer(stream)
            self.csv.writerow(["path", "status", "tags", "scores", "sidecar", "xmp_added"])
        elif fmt == "json":
            stream.write("[")

    def write(self, rec: Record) -> None:
        """Write one record."""
        if self.fmt == "json":
            self.stream.write(
                ("," if self.count else "") + "\n  " + json.dumps(rec.as_dict(), ensure_ascii=False)
            )
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(rec.as_dict(), ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            self.csv.writerow(
                [
                    shown(rec.path),
                    rec.status,
                    ";".join(t for t, _ in rec.tags),
                    ";".join(f"{s:.4f}" for _, s in rec.tags),
                    shown(rec.sidecar) if rec.sidecar else "",
                    ";".join(rec.xmp_added or []),
                ]
            )
        else:
            tags = ", ".join(f"{t} ({s:.2f})" for t, s in rec.tags) or "-"
            self.stream.write(f"{shown(rec.path, one_line=True)}\t{rec.status}\t{tags}\n")
            if rec.sidecar is not None and rec.xmp_added:
                verb = "would add" if self.dry_run else "added"
                self.stream.write(
                    f"  {verb} {', '.join(rec.xmp_added)} -> {shown(rec.sidecar, one_line=True)}\n"
                )
        self.count += 1
        if self.stream.isatty():
            self.stream.flush()

    def close(self) -> None:
        """Finish the document (closes the JSON array)."""
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------- model
def model_id(model_dir: Path, method: str) -> str:
    """A short id of the model bundle's content and method, recorded in sidecars to skip re-runs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return f"tagan-{method}-{digest.hexdigest()[:12]}"


def default_model_dir() -> Path:
    """data/tagger of the working directory when there is one, else of the repository holding cli.py."""
    if DEFAULT_MODEL_DIR.is_dir():
        return DEFAULT_MODEL_DIR
    return Path(__file__).resolve().parent / DEFAULT_MODEL_DIR


def load_tagger(model_dir: Path, method: str) -> Any:
    """The trained Tagger bundle; a missing or broken one is a UserError naming the command that builds it."""
    from tagan.errors import UserError

    if not Path(model_dir).is_dir() or not any(Path(model_dir).iterdir()):
        raise UserError(f"no trained model in {model_dir}; {BUILD_HINT}")
    from tagan.tagging.tagger import Tagger

    try:
        return Tagger.load(Path(model_dir), method)
    except FileNotFoundError as e:
        raise UserError(f"model in {model_dir} is incomplete ({e}); {BUILD_HINT}") from None


def read_vocab(path: Path, vocabulary: Iterable[str]) -> set[str]:
    """The user's keyword list (one per line, '#' comments) matched case-insensitively to the model's tags."""
    from tagan.errors import UserError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(
            f"--vocab {path}: cannot read it ({e}); give a UTF-8 text file, one keyword per line"
        ) from None
    wanted = {ln.strip().casefold() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
    allowed = {t for t in vocabulary if t.casefold() in wanted}
    if not allowed:
        raise UserError(
            f"--vocab {path}: none of its {len(wanted)} keywords is in the model's vocabulary; see `tagan info`"
        )
    if len(allowed) < len(wanted):
        log.warning(
            "--vocab: %d of %d keywords are not in the model's vocabulary and are ignored",
            len(wanted) - len(allowed),
            len(wanted),
        )
    return allowed


# --------------------------------------------------------------------------------------------- tagging
@dataclass
class Session:
    """What tagging needs once per run: the Tagger, the backbone, the model id, the allowed tags."""

    tagger: Any
    backbone: Any
    model_id: str
    allowed: set[str] | None = None
    decode: dict[str, int] = field(
        default_factory=dict
    )  # max_side / max_pixels the features were extracted with
    planned: tuple[Path | None, dict[str, dict[str, set[str]]]] = field(
        default_factory=lambda: (None, {})
    )  # dry run: the last sidecar and what it would get (net_of_planned)


def open_session(args: argparse.Namespace) -> Session:
    """Load the model bundle (first: a missing model fails before anything else loads) and its backbone."""
    tagger = load_tagger(args.model, args.method)
    from tagan.tagging.features import load_backbone
    from tagan.utils import resolve_device

    allowed = read_vocab(args.vocab, tagger.words) if getattr(args, "vocab", None) else None
    feats = tagger.bundle.features  # exactly how the pipeline extracted the training features
    if args.runtime is not None:  # another runtime; it is checked against torch's features when it loads
        feats = dataclasses.replace(feats, runtime=args.runtime)
    backbone = load_backbone(feats, resolve_device(args.device))
    if backbone.runtime != "torch" and backbone.device.type == "cpu":
        import torch

        # torch now only runs the tagger on one photo at a time: too small for intra-op threads, which
        # cost 10x in wall time on a busy machine (4.5 vs 45 CPU ms/photo measured at load 11)
        torch.set_num_threads(1)
    decode = {"max_side": feats.max_side, "max_pixels": feats.max_pixels}
    return Session(tagger, backbone, model_id(args.model, args.method), allowed, decode)


def tag_features(session: Session, feature: Any, args: argparse.Namespace) -> list[tuple[str, float]]:
    """Tags of one photo from its feature vector (F,); one photo per call, so its tags depend only on it and --seed."""
    import numpy as np

    (tags,) = session.tagger.tag(
        np.asarray(feature, dtype=np.float32)[None],  # (1, F)
        top_k=args.top_k,
        samples=args.samples,
        seed=args.seed,
        allowed=session.allowed,
    )
    return [(t, float(s)) for t, s in tags if s >= args.min_score]


def photo_features(
    session: Session, paths: list[Path], args: argparse.Namespace, *, workers: int | None = None
) -> Iterator[tuple[Path, Any, Any]]:
    """(path, feature (F,) or None, skip reason) per photo, extracted exactly as the pipeline did (bundle config)."""
    from tagan.tagging.features import extract_features

    return extract_features(
        paths, session.backbone, batch_size=args.batch_size,
        workers=args.workers if workers is None else workers, device=session.backbone.device, **session.decode,
    )  # fmt: skip


def tag_stream(args: argparse.Namespace, session: Session) -> Iterator[Record]:
    """Records of every photo under args.paths, in walk order; paths are streamed in chunks (bounded memory).

    Folders that cannot be listed become skipped records.
    """
    problems: list[Record] = []
    found = iter_photos(
        args.paths,
        exclude=args.exclude,
        on_error=lambda p, why: problems.append(Record(p, f"skipped: {why}")),
    )
    for chunk in photo_chunks(found, args.chunk):
        yield from problems
        problems.clear()
        yield from tag_chunk(chunk, args, session)
    yield from problems


def tag_chunk(chunk: list[Path], args: argparse.Namespace, session: Session) -> Iterator[Record]:
    """Records of one chunk of photos, in order, each as soon as its features (or its twin's) are known.

    A RAW whose JPEG/HEIC twin is in the chunk reuses the twin's features (one decode for both); each still
    gets its own record and sidecar.
    """
    from tagan.readers import xmp

    done: dict[Path, Record] = {}
    todo = []
    for path in chunk:
        sidecar = xmp.sidecar_path(path, args.xmp_style)
        if args.write_xmp and not args.force and xmp.read_model(sidecar) == session.model_id:
            done[path] = Record(path, "cached", tags=xmp.read_tags(sidecar), sidecar=sidecar, xmp_added=[])
        else:
            todo.append(path)
    twins = twin_sources(todo)
    results: dict[Path, tuple[Any, str | None]] = {}
    pending = deque(chunk)

    def ready() -> Iterator[Record]:
        """Records of the chunk's leading photos whose features are known."""
        while pending:
            path = pending[0]
            if path in done:
                yield done.pop(pending.popleft())
                continue
            source = twins.get(path, path)
            if source not in results:
                return
            feature, reason = results[source]
            if feature is None and source != path:  # the twin failed: decode the RAW itself
                source = path
                ((_, feature, reason),) = photo_features(session, [path], args, workers=0)
            pending.popleft()
            if feature is None:
                yield Record(path, f"skipped: {reason}")
                continue
            rec = Record(path, tags=tag_features(session, feature, args))
            rec.source = source if source != path else None
            if args.write_xmp:
                write_sidecar(rec, session, args)
            yield rec

    decode = [p for p in todo if p not in twins]
    for path, feature, reason in photo_features(session, decode, args):
        results[Path(path)] = (feature, reason)
        yield from ready()
    yield from ready()


def tag_photos(args: argparse.Namespace, writer: Writer, sheet: Any = None) -> tuple[int, int, int]:
    """Tag every photo found under args.paths, streaming records to `writer` (and `sheet`); (ok, cached, skipped)."""
    session = open_session(args)
    from tqdm import tqdm

    counts = {"ok": 0, "cached": 0, "skipped": 0}
    bar = tqdm(
        desc="tagging",
        unit="photo",
        file=sys.stderr,
        leave=False,
        disable=args.quiet or not sys.stderr.isatty(),
    )
    for rec in tag_stream(args, session):
        counts["skipped" if rec.skipped else rec.status] += 1
        writer.write(rec)
        if sheet is not None:
            add_to_sheet(sheet, rec, session, args)
        bar.update(1)
    bar.close()
    return counts["ok"], counts["cached"], counts["skipped"]


def write_sidecar(
    rec: Record, session: Session, args: argparse.Namespace, *, dry_run: bool | None = None
) -> Any:
    """Merge the record's tags into its XMP sidecar (or only compute the change with --dry-run); the change.

    Each tag goes to dc:subject, lr:hierarchicalSubject and digiKam:TagsList under --root, with the model's
    hypernym path when its Tagger has one (`tagger.path(word) -> [broad, ..., specific]`).
    """
    from tagan.readers import xmp

    rec.sidecar = xmp.sidecar_path(rec.path, args.xmp_style)
    try:
        change = xmp.merge_keywords(
            rec.sidecar,
            [t for t, _ in rec.tags],
            model=session.model_id,
            tags=rec.tags,
            dry_run=args.dry_run if dry_run is None else dry_run,
            path_of=getattr(session.tagger, "path", None),
            root=args.root,
            mode=args.mode,
        )
        if args.dry_run if dry_run is None else dry_run:
            net_of_planned(change, session)
        rec.xmp_added, rec.xmp_change = change.added, change
        return change
    except xmp.XmpError as e:
        rec.status = f"skipped: existing sidecar left untouched: {e}"
    except OSError as e:
        rec.status = f"skipped: {sidecar_write_error(rec.sidecar, e)}"
    return None


def net_of_planned(change: Any, session: Session) -> None:
    """Dry run: leave out of `change` what the previous photo already plans for the same sidecar.

    With --xmp-style stem, IMG_1.CR2 and IMG_1.JPG share IMG_1.xmp (walks list them one after the other): the
    real run writes each keyword once (the second photo finds it there), so the dry run reports it once too.
    """
    sidecar, planned = session.planned
    if sidecar != change.sidecar:
        planned = {name: {"add": set(), "remove": set()} for name in change.properties}
        session.planned = (change.sidecar, planned)
    elif change.created:
        change.created = False  # the previous photo creates it
    for name, ops in change.properties.items():
        for op, values in ops.items():
            ops[op] = [v for v in values if v.strip().casefold() not in planned[name][op]]
            planned[name][op].update(v.strip().casefold() for v in values)
    change.added, change.removed = change.properties["subject"]["add"], change.properties["subject"]["remove"]


def sidecar_write_error(sidecar: Path, e: OSError) -> str:
    """One line saying why a sidecar could not be written and what fixes it."""
    folder = Path(sidecar).parent
    try:
        mode = os.lstat(sidecar).st_mode
    except OSError:
        mode = None
    if mode is not None and not mode & 0o222:
        return f"sidecar {sidecar} is read-only, left untouched; make it writable (chmod u+w) to let tagan change it"
    if not os.access(folder, os.W_OK):
        return f"cannot write in folder {folder} (read-only), nothing changed; make the folder writable or drop --write-xmp"
    return f"cannot write sidecar {sidecar} ({e.strerror or e}); make it and its folder writable or drop --write-xmp"


# --------------------------------------------------------------------------------------------- commands
def cmd_tag(args: argparse.Namespace) -> int:
    """The `tag` subcommand."""
    from tagan.errors import UserError
    from tagan.files import atomic_path

    missing = [str(p) for p in args.paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    if args.dry_run and not args.write_xmp:
        log.warning("--dry-run only affects --write-xmp; nothing would be written anyway")
    fmt = args.format or ("table" if sys.stdout.isatty() or args.output is None else "json")
    with ExitStack() as stack:
        if args.output is not None:
            tmp = stack.enter_context(atomic_path(args.output))  # renamed over --output only on success
            stream = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        else:
            stream = sys.stdout
        writer = Writer(stream, fmt, dry_run=args.dry_run)
        sheet = open_sheet(stack, args)
        ok, cached, skipped = tag_photos(args, writer, sheet)
        writer.close()
        if sheet is not None:
            sheet.end(
                f"{ok + cached + skipped} photos: {ok} tagged, {cached} already tagged, {skipped} skipped"
            )
    total = ok + cached + skipped
    if total == 0:
        log.warning("no photos found under %s", ", ".join(map(str, args.paths)))
    log.info("%d photos: %d tagged, %d already tagged by this model, %d skipped", total, ok, cached, skipped)
    return EXIT_SKIPPED if skipped else EXIT_OK


# --------------------------------------------------------------------------------------------- review (--report)
def open_sheet(stack: ExitStack, args: argparse.Namespace) -> Any:
    """The HTML contact sheet of --report, written atomically (renamed into place only when the run ends well)."""
    if args.report is None:
        return None
    from tagan.files import atomic_path
    from tagan.photos.report import ContactSheet

    tmp = stack.enter_context(atomic_path(args.report))
    stream = stack.enter_context(open(tmp, "w", encoding="utf-8"))  # noqa: SIM115
    if not args.write_xmp:
        action = "preview: nothing written (add --write-xmp to write the sidecars)"
    elif args.dry_run:
        action = "dry run: nothing written"
    else:
        action = "sidecars written"
    meta = {"photos": ", ".join(map(str, args.paths)), "model": f"{args.model} ({args.method})",
            "root": args.root or "(none)", "mode": args.mode, "sidecars": action}  # fmt: skip
    sheet = ContactSheet(
        stream, title="tagan contact sheet", meta=meta, preview=args.dry_run or not args.write_xmp
    )
    sheet.begin()
    return sheet


def add_to_sheet(sheet: Any, rec: Record, session: Session, args: argparse.Namespace) -> None:
    """One photo on the contact sheet; without --write-xmp it shows what --write-xmp would change."""
    from tagan.photos.report import thumbnail_base64

    change = None
    if rec.status == "ok" and not args.write_xmp:
        preview = Record(rec.path, rec.status, rec.tags)
        change = write_sidecar(preview, session, args, dry_run=True)
        rec_sidecar, status = preview.sidecar, preview.status
    else:
        rec_sidecar, status = rec.sidecar, rec.status
        change = rec.xmp_change
    sheet.add(
        rec.path,
        status,
        rec.tags,
        sidecar=rec_sidecar,
        changes=change.properties if change is not None else None,
        thumb=None if rec.status.startswith("skipped: ") and not rec.tags else thumbnail_base64(rec.path),
    )


# --------------------------------------------------------------------------------------------- untag
def iter_sidecars(paths: Iterable[Path]) -> Iterator[Path]:
    """Sidecars to untag: .xmp files given or under folders (recursively), and both sidecars of photos given."""
    from tagan.readers import xmp

    seen: set[str] = set()

    def first(path: Path) -> bool:
        key = os.path.abspath(path)
        if key in seen:
            return False
        seen.add(key)
        return True

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
                sidecar = xmp.sidecar_path(root, style)
                if os.path.lexists(sidecar) and first(sidecar):
                    yield sidecar


def untag_one(sidecar: Path, dry_run: bool) -> dict[str, Any]:
    """Remove tagan's own keywords from one sidecar; a record of what went (or would go)."""
    from tagan.readers import xmp

    rec: dict[str, Any] = {"sidecar": str(sidecar), "status": "ok", "removed": [], "properties": {}}
    try:
        change = xmp.remove_own(sidecar, dry_run=dry_run)
    except xmp.XmpError as e:
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


def cmd_untag(args: argparse.Namespace) -> int:
    """The `untag` subcommand: remove exactly the keywords tagan added, nothing a person added."""
    from tagan.errors import UserError

    missing = [str(p) for p in args.paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    counts = {"changed": 0, "unchanged": 0, "skipped": 0}
    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    for sidecar in iter_sidecars(args.paths):
        rec = untag_one(sidecar, args.dry_run)
        kind = (
            "skipped"
            if rec["status"].startswith("skipped")
            else "unchanged"
            if rec["status"] == "unchanged"
            else "changed"
        )
        counts[kind] += 1
        if fmt == "jsonl":
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif kind != "unchanged":
            verb = "would remove" if args.dry_run else "removed"
            what = "; ".join(f"{k}: {', '.join(v)}" for k, v in rec["properties"].items())
            sys.stdout.write(
                f"{sidecar}\t{rec['status']}\t{verb} {what}\n" if what else f"{sidecar}\t{rec['status']}\n"
            )
    log.info(
        "%d sidecars: %d %s, %d without tagan keywords, %d skipped",
        sum(counts.values()),
        counts["changed"],
        "would change" if args.dry_run else "changed",
        counts["unchanged"],
        counts["skipped"],
    )
    return EXIT_SKIPPED if counts["skipped"] else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """The `info` subcommand."""
    tagger = load_tagger(args.model, args.method)
    info = {"model_dir": str(args.model), "model_id": model_id(args.model, args.method), **tagger.info}
    if args.format == "json":
        sys.stdout.write(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        return EXIT_OK
    out = io.StringIO()
    shown = (
        "model_dir",
        "model_id",
        "method",
        "dataset",
        "backbone",
        "feature_dim",
        "vocab_size",
        "open_vocab_size",
        "embedding_dim",
    )
    for key in shown:
        if key in info:
            out.write(f"{key:15} {info[key]}\n")
    if isinstance(info.get("features"), dict):
        out.write(f"{'features':15} " + ", ".join(f"{k}={v}" for k, v in info["features"].items()) + "\n")
    if isinstance(info.get("decoding"), dict):
        out.write(f"{'decoding':15} " + ", ".join(f"{k}={v}" for k, v in info["decoding"].items()) + "\n")
    if info.get("aliases"):
        out.write(f"{'aliases':15} {', '.join(f'{a} = {m}' for a, m in info['aliases'].items())}\n")
    metrics = info.get("test_metrics") or {}
    names = [
        n
        for n in ("p_at_5", "r_at_5", "f1_at_5", "p_at_10", "map", "coverage")
        if any(n in m for m in metrics.values())
    ]
    if metrics:
        out.write("\ntest metrics (pick a method with --method):\n")
        out.write(f"  {'method':20}" + "".join(f"{n:>10}" for n in names) + "\n")
        for method, m in metrics.items():
            cells = "".join(
                f"{m[n]:>10.4g}" if isinstance(m.get(n), (int, float)) else f"{'-':>10}" for n in names
            )
            out.write(f"  {method:20}{cells}\n")
    if info.get("params"):
        out.write("\nparams:\n")
        for key, value in sorted(info["params"].items()):
            out.write(f"  {key}: {json.dumps(value, default=str)}\n")
    sys.stdout.write(out.getvalue())
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `tagan` with its `tag` and `info` subcommands."""
    parser = argparse.ArgumentParser(
        prog="tagan",
        description="Tag photos with a conditional GAN (Mirza & Osindero 2014) trained by the tagan DVC pipeline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{tag,untag,info}")
    model_opts = argparse.ArgumentParser(add_help=False)
    model_opts.add_argument(
        "--model",
        type=Path,
        default=None,  # main() fills in default_model_dir(): ./data/tagger, else this repository's
        metavar="DIR",
        help=f"model bundle written by `dvc repro` (default: {DEFAULT_MODEL_DIR} of the working directory "
        "when there is one, else of this repository)",
    )
    model_opts.add_argument(
        "--method",
        choices=METHODS,
        default="cgan",
        help="cgan: the default conditional GAN (the open-vocabulary one when built); wordnet, conse, "
        "imagenet_names: training-free real-world baselines; knn: tag transfer from the nearest training "
        "images; classifier: the multi-label MLP. `tagan info` shows each one's test metrics",
    )
    model_opts.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress bar"
    )

    tag = sub.add_parser(
        "tag",
        parents=[model_opts],
        help="tag photos and folders of photos",
        description="Tag photos (files and folders, recursively) and print or save their tags.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tag.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="photo files and folders (folders are searched recursively)",
    )
    tag.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files and folders whose name or path relative to PATH matches GLOB (repeatable)",
    )
    tag.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format (default: table on stdout, json with --output)",
    )
    tag.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the results to FILE (atomically) instead of stdout",
    )
    tag.add_argument(
        "--write-xmp",
        action="store_true",
        help="merge the tags as keywords into XMP sidecars (dc:subject, lr:hierarchicalSubject, "
        "digiKam:TagsList), keeping everything already there; `tagan untag` removes them again",
    )
    tag.add_argument(
        "--xmp-style",
        choices=("ext", "stem"),
        default="ext",
        help="sidecar name: ext = NAME.EXT.xmp (digiKam, darktable; default), stem = NAME.xmp (Lightroom)",
    )
    tag.add_argument(
        "-n", "--dry-run", action="store_true", help="with --write-xmp: show what would change, write nothing"
    )
    tag.add_argument(
        "--force", action="store_true", help="with --write-xmp: re-tag photos already tagged by this model"
    )
    tag.add_argument("-k", "--top-k", type=_positive_int, default=10, help="tags per photo (default: 10)")
    tag.add_argument(
        "--min-score",
        type=_score,
        default=0.0,
        help="drop tags scoring below this (cgan: vote share; knn, classifier: their 0-1 score; default: 0)",
    )
    tag.add_argument(
        "--samples",
        type=_positive_int,
        default=None,
        help="GAN samples per photo, cgan only (default: the bundle's, those its test metrics used)",
    )
    tag.add_argument("--seed", type=int, default=0, help="random seed; same seed, same tags (default: 0)")
    tag.add_argument(
        "--vocab",
        type=Path,
        default=None,
        metavar="FILE",
        help="only use tags listed in FILE (one keyword per line)",
    )
    tag.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        help="photos per network batch (default: 4, the fastest on a 2-core CPU; try more on a GPU)",
    )
    tag.add_argument(
        "--workers",
        type=_nonneg_int,
        default=1,
        help="image-decoding worker processes (default: 1; 0 decodes in the main process)",
    )
    tag.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)"
    )
    tag.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=None,
        help="what runs the image network: auto (onnxruntime on a CPU, torch on CUDA), onnxruntime, openvino "
        "or torch (default: the runtime the model's features were extracted with). Each is checked against "
        "torch's features when it loads",
    )
    tag.add_argument("--chunk", type=_positive_int, default=512, help=argparse.SUPPRESS)  # paths held at once
    add_sidecar_options(tag)
    tag.set_defaults(func=cmd_tag)
    add_untag_parser(sub)

    info = sub.add_parser(
        "info",
        parents=[model_opts],
        help="show the model: dataset, params, vocabulary, test metrics",
        description="Show the model bundle: dataset, backbone, vocabulary size, params and each method's test metrics.",
    )
    info.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    info.set_defaults(func=cmd_info)
    return parser


def add_sidecar_options(tag: argparse.ArgumentParser) -> None:
    """Options of `tag` for keyword hierarchy, re-tagging and review (--root, --mode, --report)."""
    tag.add_argument(
        "--root",
        default="tagan",
        metavar="NAME",
        help="with --write-xmp: file tags under this keyword, e.g. tagan|animal|dog in lr:hierarchicalSubject "
        "and tagan/animal/dog in digiKam:TagsList; nested roots as auto/tagan; '' for none (default: tagan)",
    )
    tag.add_argument(
        "--mode",
        choices=("append", "replace-own"),
        default="append",
        help="with --write-xmp: append = add new tags to what is there; replace-own = first remove the keywords "
        "tagan added before (never a person's), e.g. after a newer model (use with --force for the same model)",
    )
    tag.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.html",
        help="also write a self-contained HTML contact sheet: thumbnails, tags with scores and what changes "
        "(or, without --write-xmp or with --dry-run, would change) in each sidecar",
    )


def add_untag_parser(sub: Any) -> None:
    """The `untag` subcommand's parser."""
    untag = sub.add_parser(
        "untag",
        help="remove the keywords tagan added to XMP sidecars (never a person's)",
        description="Remove exactly the keywords tagan added (recorded in each sidecar) and its model marks; "
        "keywords a person added stay, even the same words. PATH: photos (both NAME.EXT.xmp and NAME.xmp), "
        ".xmp files, or folders (every .xmp under them). A sidecar tagan created that holds nothing else "
        "afterwards is deleted.",
        epilog=UNTAG_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    untag.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos, .xmp sidecars or folders")
    untag.add_argument(
        "-n", "--dry-run", action="store_true", help="show what would be removed, change nothing"
    )
    untag.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default=None,
        help="table: changed and skipped sidecars; jsonl: one record per sidecar (default: table on a terminal)",
    )
    untag.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    untag.set_defaults(func=cmd_untag)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tagan` and `python cli.py`; returns the exit status."""
    args = build_parser().parse_args(argv)
    if "model" in args and args.model is None:
        args.model = default_model_dir()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise here
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from tagan.config import ParamsError
    from tagan.errors import UserError

    try:
        return args.func(args)
    except (UserError, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: sidecars written so far are complete; no partial file was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("internal error; please report it with this traceback")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
