"""A tagging session over a photo library: the model loaded once, photos streamed in chunks, sidecars kept.

`open_session` loads the model bundle and its backbone; `tag_stream` yields one Record per photo found, in walk
order, writing sidecars as it goes and skipping photos whose sidecar says their tags are still current
(tagan.photos.ledger). faiss and the Tagger are imported inside the functions that need them, so that
`tagan --help` and `tagan untag` start without them; the default method and the ONNX backbone need no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tagan.errors import UserError
from tagan.photos import ledger, sidecars
from tagan.photos.discovery import iter_photos, photo_chunks, twin_sources
from tagan.photos.records import Record
from tagan.readers.xmp import XmpError, sidecar_path

log = logging.getLogger(__name__)
BUILD_HINT = "build it with `make repro` (see the README), or pass --model DIR of another experiment"


@dataclass(frozen=True)
class TagOptions:
    """What `tagan tag` does with each photo: decoding settings, batching, and what happens to sidecars."""

    top_k: int = 10
    min_score: float | None = None  # None: the bundle's threshold for its default method (0 for the others)
    samples: int | None = None  # GAN samples per photo (None: the bundle's)
    seed: int = 0
    batch_size: int = 4
    workers: int = 1
    chunk: int = 512  # paths held at once
    exclude: tuple[str, ...] = ()
    write_xmp: bool = False
    xmp_style: str = "ext"
    dry_run: bool = False
    force: bool = False
    root: str = "tagan"
    mode: str = "append"


# --------------------------------------------------------------------------------------------- the Tagger
# Every use of tagan.tagging.tagger.Tagger is in this section (the methods registry replaces it in the merge).
def load_tagger(model_dir: Path, method: str) -> Any:
    """The trained Tagger bundle; a missing or broken one is a UserError naming the command that builds it."""
    if not Path(model_dir).is_dir() or not any(Path(model_dir).iterdir()):
        raise UserError(f"no trained model in {model_dir}; {BUILD_HINT}")
    from tagan.tagging.tagger import Tagger  # numpy, faiss: not for --help

    try:
        return Tagger.load(Path(model_dir), method)
    except FileNotFoundError as e:
        raise UserError(f"model in {model_dir} is incomplete ({e}); {BUILD_HINT}") from None


def model_info(model_dir: Path, method: str) -> dict[str, Any]:
    """What `tagan info` shows: the bundle's info plus where it is and its model id."""
    tagger = load_tagger(model_dir, method)
    return {"model_dir": str(model_dir), "model_id": model_id(model_dir, method), **tagger.info}


def tag_features(
    session: Session, feature: Any, opts: TagOptions, faces: Any = None
) -> list[tuple[str, float]]:
    """Keywords of one photo from its feature vector (F,) and face evidence; one photo per call, so its tags depend
    only on it and the seed."""
    (tags,) = session.tagger.tag(
        np.asarray(feature, dtype=np.float32)[None],  # (1, F)
        top_k=opts.top_k,
        samples=opts.samples,
        seed=opts.seed,
        allowed=session.allowed,
        evidence=[faces],
        min_score=opts.min_score,
    )
    return [(t, float(s)) for t, s in tags]


def _tagger_parts(tagger: Any) -> tuple[Any, list[str], Any]:
    """(the bundle's FeatureConfig, the vocabulary, word -> hypernym path or None) of a Tagger."""
    return tagger.bundle.features, tagger.words, getattr(tagger, "path", None)


# --------------------------------------------------------------------------------------------- the session
def model_id(model_dir: Path, method: str) -> str:
    """A short id of the model bundle's content and method, recorded in sidecars to skip re-runs."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return f"tagan-{method}-{digest.hexdigest()[:12]}"


def read_vocab(path: Path, vocabulary: Iterable[str]) -> set[str]:
    """The user's keyword list (one per line, '#' comments) matched case-insensitively to the model's tags."""
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


@dataclass
class Session:
    """What tagging needs once per run: the Tagger, the backbone, the model id, the allowed tags."""

    tagger: Any
    backbone: Any
    model_id: str
    allowed: set[str] | None = None
    decode: dict[str, int] = field(default_factory=dict)  # max_side / max_pixels the features were made with
    path_of: Any = None  # word -> hypernym path, for keyword hierarchies (None: flat)
    vocab_hash: str | None = None  # blake2b of the --vocab file (a setting the ledger records)
    faces: bool = True  # the face detector runs (the bundle's keyword rules ask for it and no --no-faces)
    # dry run: the last sidecar and what it would get (net_of_planned)
    planned: tuple[Path | None, dict[str, dict[str, set[str]]]] = field(default_factory=lambda: (None, {}))

    def settings(self, opts: TagOptions) -> dict[str, Any]:
        """The settings that change a photo's tags, as the made-from ledger records them."""
        return {"top_k": opts.top_k, "min_score": opts.min_score, "samples": opts.samples, "seed": opts.seed,
                "vocab": self.vocab_hash, "runtime": self.backbone.runtime, "faces": self.faces}  # fmt: skip


def open_session(
    model_dir: Path,
    method: str,
    *,
    vocab: Path | None = None,
    runtime: str | None = None,
    device: str = "auto",
    faces: bool = True,
) -> Session:
    """Load the model bundle (first: a missing model fails before anything else loads) and its backbone."""
    tagger = load_tagger(model_dir, method)
    from tagan.models.backbones import resolve_device
    from tagan.tagging.features import load_backbone

    feats, words, path_of = _tagger_parts(tagger)  # feats: exactly how the pipeline extracted its features
    allowed = read_vocab(vocab, words) if vocab else None
    if runtime is not None:  # another runtime; it is checked against torch's features when it loads
        feats = dataclasses.replace(feats, runtime=runtime)
    backbone = load_backbone(feats, resolve_device(device))
    if backbone.runtime != "torch":
        # the tagger (numpy, and torch for some methods) then only runs on one photo at a time: too small for
        # intra-op threads, which spin beside the engine's and the decode workers' (torch's cost 10x in wall
        # time on a busy machine: 4.5 vs 45 CPU ms/photo measured at load 11)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        if "torch" in sys.modules:  # a method that runs torch (not the default)
            sys.modules["torch"].set_num_threads(1)
    decode = {"max_side": feats.max_side, "max_pixels": feats.max_pixels}
    return Session(tagger, backbone, model_id(model_dir, method), allowed, decode, path_of,
                   ledger.file_hash(vocab) if vocab else None, faces and tagger.wants_faces)  # fmt: skip


def photo_features(session: Session, paths: list[Path], *, batch_size: int, workers: int) -> Iterator[Any]:
    """tagan.tagging.features.Extracted per photo (feature, face evidence, or the skip reason), extracted exactly as
    photo_eval does (the bundle's config)."""
    from tagan.tagging.features import extract_features

    return extract_features(
        paths, session.backbone, batch_size=batch_size, workers=workers, faces=session.faces,
        **session.decode,
    )  # fmt: skip


def tag_stream(paths: Iterable[Path], session: Session, opts: TagOptions) -> Iterator[Record]:
    """Records of every photo under `paths`, in walk order; paths are streamed in chunks (bounded memory).

    Folders that cannot be listed become skipped records.
    """
    problems: list[Record] = []
    found = iter_photos(
        paths, exclude=opts.exclude, on_error=lambda p, why: problems.append(Record(p, f"skipped: {why}"))
    )
    for chunk in photo_chunks(found, opts.chunk):
        yield from problems
        problems.clear()
        yield from tag_chunk(chunk, session, opts)
    yield from problems


def _check_ledger(
    path: Path, session: Session, opts: TagOptions
) -> tuple[Record | None, dict | None, str | None]:
    """(a cached Record or None, the photo's fingerprint, why it is tagged again) from its sidecar's ledger."""
    sidecar = sidecar_path(path, opts.xmp_style)
    if not opts.dry_run:
        sidecars.sweep_once(sidecar.parent)  # temp files a killed run left
    book = ledger.read_ledger(sidecar)
    known = (book.made or {}).get(path.name)
    photo = ledger.fingerprint(path, known if isinstance(known, dict) else None)
    if opts.force:
        return None, photo, "forced" if book.model is not None else None
    reason = ledger.retag_reason(book, path.name, photo, session.model_id, session.settings(opts))
    if reason is None:
        return Record(path, "cached", tags=book.tags, sidecar=sidecar, xmp_added=[]), photo, None
    return None, photo, None if reason == "new" else reason


def tag_chunk(chunk: list[Path], session: Session, opts: TagOptions) -> Iterator[Record]:
    """Records of one chunk of photos, in order, each as soon as its features (or its twin's) are known.

    A RAW whose JPEG/HEIC twin is in the chunk reuses the twin's features (one decode for both); each still
    gets its own record and sidecar.
    """
    done: dict[Path, Record] = {}
    made: dict[Path, tuple[dict | None, str | None]] = {}  # photo -> (fingerprint, retag reason)
    todo = []
    for path in chunk:
        cached, photo, reason = _check_ledger(path, session, opts) if opts.write_xmp else (None, None, None)
        if cached is not None:
            done[path] = cached
        else:
            made[path] = (photo, reason)
            todo.append(path)
    twins = twin_sources(todo)
    results: dict[Path, Any] = {}  # path -> tagan.tagging.features.Extracted
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
            item = results[source]
            if item.feature is None and source != path:  # the twin failed: decode the RAW itself
                source = path
                (item,) = photo_features(session, [path], batch_size=opts.batch_size, workers=0)
            pending.popleft()
            if item.feature is None:
                yield Record(path, f"skipped: {item.reason}")
                continue
            photo, retag = made[path]
            rec = Record(path, tags=tag_features(session, item.feature, opts, item.faces), retag=retag)
            rec.source = source if source != path else None
            if opts.write_xmp:
                write_sidecar(rec, session, opts, photo=photo)
            yield rec

    decode = [p for p in todo if p not in twins]
    for item in photo_features(session, decode, batch_size=opts.batch_size, workers=opts.workers):
        results[Path(item.path)] = item
        yield from ready()
    yield from ready()


def _mode(rec: Record, opts: TagOptions) -> str:
    """The sidecar edit for this photo: tagan's earlier keywords of a photo replaced by another picture under the
    same name described that other picture, so they go (replace-own: the person's keywords always stay)."""
    return "replace-own" if opts.mode == "append" and rec.retag == "photo changed" else opts.mode


def write_sidecar(
    rec: Record, session: Session, opts: TagOptions, *, dry_run: bool | None = None, photo: dict | None = None
) -> Any:
    """Merge the record's tags into its XMP sidecar (or only compute the change with dry_run); the change.

    Each tag goes to dc:subject, lr:hierarchicalSubject and digiKam:TagsList under opts.root, with the model's
    hypernym path when it has one. photo: the fingerprint recorded in the made-from ledger.
    """
    dry_run = opts.dry_run if dry_run is None else dry_run
    rec.sidecar = sidecar_path(rec.path, opts.xmp_style)
    record = ledger.made_record(
        photo or ledger.fingerprint(rec.path), session.model_id, session.settings(opts)
    )
    try:
        change = sidecars.merge_keywords(
            rec.sidecar, [t for t, _ in rec.tags], model=session.model_id, tags=rec.tags,
            made=(rec.path.name, record), dry_run=dry_run, path_of=session.path_of, root=opts.root,
            mode=_mode(rec, opts),  # type: ignore[arg-type]
        )  # fmt: skip
        if dry_run:
            net_of_planned(change, session)
        rec.xmp_added, rec.xmp_change = change.added, change
        return change
    except XmpError as e:
        rec.status = f"skipped: existing sidecar left untouched: {e}"
    except OSError as e:
        rec.status = f"skipped: {sidecars.sidecar_write_error(rec.sidecar, e)}"
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


def tag_photos(
    paths: Iterable[Path],
    session: Session,
    opts: TagOptions,
    writer: Any,
    sheet: Any = None,
    *,
    quiet: bool = False,
) -> dict[str, int]:
    """Tag every photo under `paths`, streaming records to `writer` (and `sheet`); counts by outcome.

    Counts: ok, cached, skipped, and retag (of the ok ones, those tagged again; by reason in the log).
    """
    counts = {"ok": 0, "cached": 0, "skipped": 0, "retag": 0}
    bar = tqdm(
        desc="tagging", unit="photo", file=sys.stderr, leave=False, disable=quiet or not sys.stderr.isatty()
    )
    for rec in tag_stream(paths, session, opts):
        counts["skipped" if rec.skipped else rec.status] += 1
        counts["retag"] += rec.retag is not None and not rec.skipped
        writer.write(rec)
        if sheet is not None:
            add_to_sheet(sheet, rec, session, opts)
        bar.update(1)
    bar.close()
    return counts


def add_to_sheet(sheet: Any, rec: Record, session: Session, opts: TagOptions) -> None:
    """One photo on the contact sheet; without --write-xmp it shows what --write-xmp would change."""
    from tagan.photos.report import thumbnail_base64  # jinja2: only with --report

    if rec.status == "ok" and not opts.write_xmp:
        preview = Record(rec.path, rec.status, rec.tags)
        change = write_sidecar(preview, session, opts, dry_run=True)
        sidecar, status = preview.sidecar, preview.status
    else:
        sidecar, status, change = rec.sidecar, rec.status, rec.xmp_change
    sheet.add(
        rec.path,
        status,
        rec.tags,
        sidecar=sidecar,
        changes=change.properties if change is not None else None,
        thumb=None if rec.status.startswith("skipped: ") and not rec.tags else thumbnail_base64(rec.path),
    )
