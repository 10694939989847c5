"""tagan: tag folders of photos with the trained conditional GAN and write the tags where photo tools read them.

The command line only: arguments, output formats and exit codes (EPILOG) over the photos library, tagan.photos.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tagan.config import ParamsError
from tagan.errors import UserError
from tagan.files import atomic_path
from tagan.photos import session as tagging
from tagan.photos.discovery import iter_photos  # noqa: F401  (cli.iter_photos: tests/test_hostile_files.py)
from tagan.photos.records import FORMATS, Writer, info_table, shown  # noqa: F401  (shown: same)
from tagan.photos.session import TagOptions
from tagan.photos.sidecars import iter_sidecars, untag_one

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_MODEL_DIR = Path("data/tagger")  # relative to the working directory, else to this repository
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


def default_model_dir() -> Path:
    """data/tagger of the working directory when there is one, else of the repository holding cli.py."""
    if DEFAULT_MODEL_DIR.is_dir():
        return DEFAULT_MODEL_DIR
    return Path(__file__).resolve().parent / DEFAULT_MODEL_DIR


def tag_options(args: argparse.Namespace) -> TagOptions:
    """The library's options from the parsed `tag` arguments (the Namespace goes no further than this file)."""
    return TagOptions(top_k=args.top_k, min_score=args.min_score, samples=args.samples, seed=args.seed,
                      batch_size=args.batch_size, workers=args.workers, chunk=args.chunk, exclude=tuple(args.exclude),
                      write_xmp=args.write_xmp, xmp_style=args.xmp_style, dry_run=args.dry_run, force=args.force,
                      root=args.root, mode=args.mode)  # fmt: skip


def open_session(args: argparse.Namespace) -> tagging.Session:
    """The session of parsed `tag` arguments (tests/test_bundle.py and scripts/bench_cli.py use it too)."""
    return tagging.open_session(args.model, args.method, vocab=args.vocab, runtime=args.runtime,
                                device=args.device, faces=not args.no_faces)  # fmt: skip


def photo_features(session: tagging.Session, paths: list[Path], args: argparse.Namespace) -> Any:
    """tagan.photos.session.photo_features with the parsed arguments' batching (tests/test_bundle.py)."""
    return tagging.photo_features(session, paths, batch_size=args.batch_size, workers=args.workers)


def check_paths(paths: list[Path]) -> None:
    """A UserError naming the paths given that do not exist."""
    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")


def cmd_tag(args: argparse.Namespace) -> int:
    """The `tag` subcommand."""
    check_paths(args.paths)
    if args.dry_run and not args.write_xmp:
        log.warning("--dry-run only affects --write-xmp; nothing would be written anyway")
    fmt = args.format or ("table" if sys.stdout.isatty() or args.output is None else "json")
    with ExitStack() as stack:
        stream = sys.stdout
        if args.output is not None:
            tmp = stack.enter_context(atomic_path(args.output))  # renamed over --output only on success
            stream = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        writer = Writer(stream, fmt, dry_run=args.dry_run)
        session = open_session(args)  # the model first: a missing one fails before any output file
        sheet = open_sheet(stack, args)
        n = tagging.tag_photos(args.paths, session, tag_options(args), writer, sheet, quiet=args.quiet)
        writer.close()
        total = n["ok"] + n["cached"] + n["skipped"]
        if sheet is not None:
            sheet.end(
                f"{total} photos: {n['ok']} tagged, {n['cached']} already tagged, {n['skipped']} skipped"
            )
    if total == 0:
        log.warning("no photos found under %s", ", ".join(map(str, args.paths)))
    again = f" ({n['retag']} of them again: photo, model or settings changed)" if n["retag"] else ""
    log.info("%d photos: %d tagged%s, %d already tagged by this model, %d skipped", total, n["ok"], again,
             n["cached"], n["skipped"])  # fmt: skip
    return EXIT_SKIPPED if n["skipped"] else EXIT_OK


def open_sheet(stack: ExitStack, args: argparse.Namespace) -> Any:
    """The HTML contact sheet of --report, written atomically (renamed into place only when the run ends well)."""
    if args.report is None:
        return None
    from tagan.photos.report import ContactSheet  # jinja2: only with --report

    stream = stack.enter_context(open(stack.enter_context(atomic_path(args.report)), "w", encoding="utf-8"))  # noqa: SIM115
    if not args.write_xmp:
        action = "preview: nothing written (add --write-xmp to write the sidecars)"
    else:
        action = "dry run: nothing written" if args.dry_run else "sidecars written"
    meta = {"photos": ", ".join(map(str, args.paths)), "model": f"{args.model} ({args.method})",
            "root": args.root or "(none)", "mode": args.mode, "sidecars": action}  # fmt: skip
    sheet = ContactSheet(
        stream, title="tagan contact sheet", meta=meta, preview=args.dry_run or not args.write_xmp
    )
    sheet.begin()
    return sheet


def cmd_untag(args: argparse.Namespace) -> int:
    """The `untag` subcommand: remove exactly the keywords tagan added, nothing a person added."""
    check_paths(args.paths)
    counts = {"changed": 0, "unchanged": 0, "skipped": 0}
    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    for sidecar in iter_sidecars(args.paths):
        rec = untag_one(sidecar, args.dry_run)
        kind = "skipped" if rec["status"].startswith("skipped") else rec["status"]
        kind = kind if kind in ("skipped", "unchanged") else "changed"
        counts[kind] += 1
        if fmt == "jsonl":
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif kind != "unchanged":
            verb = "would remove" if args.dry_run else "removed"
            what = "; ".join(f"{k}: {', '.join(v)}" for k, v in rec["properties"].items())
            sys.stdout.write(
                f"{sidecar}\t{rec['status']}\t{verb} {what}\n" if what else f"{sidecar}\t{rec['status']}\n"
            )
    log.info("%d sidecars: %d %s, %d without tagan keywords, %d skipped", sum(counts.values()), counts["changed"],
             "would change" if args.dry_run else "changed", counts["unchanged"], counts["skipped"])  # fmt: skip
    return EXIT_SKIPPED if counts["skipped"] else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """The `info` subcommand."""
    info = tagging.model_info(args.model, args.method)
    if args.format == "json":
        sys.stdout.write(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(info_table(info))
    return EXIT_OK


def _bounded(kind: type, low: float, high: float | None = None) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < low or (high is not None and value > high):
            bound = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


_positive_int, _nonneg_int, _score = _bounded(int, 1), _bounded(int, 0), _bounded(float, 0.0, 1.0)
# fmt: off
MODEL_OPTIONS = [
    (("--model",), dict(type=Path, default=None, metavar="DIR",  # main() fills in default_model_dir()
     help=f"model bundle written by `dvc repro` (default: {DEFAULT_MODEL_DIR} of the working directory when there "
          "is one, else of this repository)")),
    (("--method",), dict(default="default", metavar="METHOD",
     help="a method of the bundle (`tagan info` lists them with their metrics): default (chosen on real photos), cgan "
          "(the open conditional GAN), wordnet / conse / imagenet_names (training-free), knn, classifier, ...")),
    (("-q", "--quiet"), dict(action="store_true", help="only warnings and errors on stderr, no progress bar")),
]
TAG_OPTIONS = [
    (("paths",), dict(nargs="+", type=Path, metavar="PATH", help="photo files and folders (folders are searched recursively)")),
    (("--exclude",), dict(action="append", default=[], metavar="GLOB",
     help="skip files and folders whose name or path relative to PATH matches GLOB (repeatable)")),
    (("--format",), dict(choices=FORMATS, default=None, help="output format (default: table on stdout, json with --output)")),
    (("-o", "--output"), dict(type=Path, default=None, metavar="FILE", help="write the results to FILE (atomically) instead of stdout")),
    (("--write-xmp",), dict(action="store_true",
     help="merge the tags as keywords into XMP sidecars (dc:subject, lr:hierarchicalSubject, digiKam:TagsList), "
          "keeping everything already there; `tagan untag` removes them again")),
    (("--xmp-style",), dict(choices=("ext", "stem"), default="ext",
     help="sidecar name: ext = NAME.EXT.xmp (digiKam, darktable; default), stem = NAME.xmp (Lightroom)")),
    (("-n", "--dry-run"), dict(action="store_true", help="with --write-xmp: show what would change, write nothing")),
    (("--force",), dict(action="store_true",
     help="with --write-xmp: re-tag photos whose sidecar says they are tagged by this model, from this photo, "
          "with these settings (otherwise they are `cached`; a changed photo, model or setting re-tags by itself)")),
    (("-k", "--top-k"), dict(type=_positive_int, default=10, help="tags per photo (default: 10)")),
    (("--min-score",), dict(type=_score, default=None, help="drop tags scoring below this (cgan: vote share; others: "
     "their 0-1 score; default: the bundle's threshold for the default method, chosen on real photos; 0 otherwise)")),
    (("--samples",), dict(type=_positive_int, default=None,
     help="GAN samples per photo, cgan only (default: the bundle's, those its test metrics used)")),
    (("--seed",), dict(type=int, default=0, help="random seed; same seed, same tags (default: 0)")),
    (("--vocab",), dict(type=Path, default=None, metavar="FILE", help="only use tags listed in FILE (one keyword per line)")),
    (("--no-faces",), dict(action="store_true", help="skip the face detector (person words then only from worn clothes; about 2x faster)")),
    (("--batch-size",), dict(type=_positive_int, default=4,
     help="photos per network batch (default: 4, the fastest on a 2-core CPU; try more on a GPU)")),
    (("--workers",), dict(type=_nonneg_int, default=1,
     help="image-decoding worker processes (default: 1; 0 decodes in the main process)")),
    (("--device",), dict(default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default: auto)")),
    (("--runtime",), dict(choices=RUNTIMES, default=None,
     help="what runs the image network: auto (onnxruntime on a CPU, torch on CUDA), onnxruntime, openvino or torch "
          "(default: the runtime the model's features were extracted with). Each is checked against torch's "
          "features when it loads")),
    (("--chunk",), dict(type=_positive_int, default=512, help=argparse.SUPPRESS)),  # paths held at once
    (("--root",), dict(default="tagan", metavar="NAME",
     help="with --write-xmp: file tags under this keyword, e.g. tagan|animal|dog in lr:hierarchicalSubject and "
          "tagan/animal/dog in digiKam:TagsList; nested roots as auto/tagan; '' for none (default: tagan)")),
    (("--mode",), dict(choices=("append", "replace-own"), default="append",
     help="with --write-xmp: append = add new tags to what is there; replace-own = first remove the keywords tagan "
          "added before (never a person's), e.g. after a newer model (use with --force for the same model)")),
    (("--report",), dict(type=Path, default=None, metavar="FILE.html",
     help="also write a self-contained HTML contact sheet: thumbnails, tags with scores and what changes (or, "
          "without --write-xmp or with --dry-run, would change) in each sidecar")),
]
UNTAG_OPTIONS = [
    (("paths",), dict(nargs="+", type=Path, metavar="PATH", help="photos, .xmp sidecars or folders")),
    (("-n", "--dry-run"), dict(action="store_true", help="show what would be removed, change nothing")),
    (("--format",), dict(choices=("table", "jsonl"), default=None,
     help="table: changed and skipped sidecars; jsonl: one record per sidecar (default: table on a terminal)")),
    (("-q", "--quiet"), dict(action="store_true", help="only warnings and errors on stderr")),
]
# fmt: on


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `tagan` with its `tag`, `untag` and `info` subcommands."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tagan", epilog=EPILOG, formatter_class=raw,
        description="Tag photos with a conditional GAN (Mirza & Osindero 2014) trained by the tagan DVC pipeline.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="{tag,untag,info}")
    model_opts = argparse.ArgumentParser(add_help=False)
    for flags, kwargs in MODEL_OPTIONS:
        model_opts.add_argument(*flags, **kwargs)
    tag = sub.add_parser(
        "tag", parents=[model_opts], help="tag photos and folders of photos", epilog=EPILOG, formatter_class=raw,
        description="Tag photos (files and folders, recursively) and print or save their tags.",
    )  # fmt: skip
    untag = sub.add_parser(
        "untag", help="remove the keywords tagan added to XMP sidecars (never a person's)", epilog=UNTAG_EPILOG,
        formatter_class=raw,
        description="Remove exactly the keywords tagan added (recorded in each sidecar) and its model marks; "
        "keywords a person added stay, even the same words. PATH: photos (both NAME.EXT.xmp and NAME.xmp), "
        ".xmp files, or folders (every .xmp under them). A sidecar tagan created that holds nothing else "
        "afterwards is deleted.",
    )  # fmt: skip
    for command, options in ((tag, TAG_OPTIONS), (untag, UNTAG_OPTIONS)):
        for flags, kwargs in options:
            command.add_argument(*flags, **kwargs)
    info = sub.add_parser(
        "info", parents=[model_opts], help="show the model: dataset, params, vocabulary, test metrics",
        description="Show the model bundle: dataset, backbone, vocabulary size, params and each method's test metrics.",
    )  # fmt: skip
    info.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    tag.set_defaults(func=cmd_tag)
    untag.set_defaults(func=cmd_untag)
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tagan` and `python cli.py`; returns the exit status."""
    args = build_parser().parse_args(argv)
    if "model" in args and args.model is None:
        args.model = default_model_dir()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise here
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)  # fmt: skip
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
