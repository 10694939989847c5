"""The result of tagging one photo, and its output formats (table, json, jsonl, csv) as `tagan tag` prints them."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FORMATS = ("table", "json", "jsonl", "csv")
INFO_KEYS = ("model_dir", "model_id", "method", "dataset", "backbone", "feature_dim", "vocab_size",
             "open_vocab_size", "embedding_dim")  # fmt: skip
METRICS = ("p_at_5", "r_at_5", "f1_at_5", "p_at_10", "map", "coverage")


@dataclass
class Record:
    """The result for one photo: its tags with vote-share scores, and `ok`, `cached` or `skipped: <reason>`."""

    path: Path
    status: str = "ok"
    tags: list[tuple[str, float]] = field(default_factory=list)
    sidecar: Path | None = None
    xmp_added: list[str] | None = None  # keywords new to the sidecar (would be added, with --dry-run)
    xmp_change: Any = field(default=None, repr=False)  # the sidecar change (tagan.photos.xmp_edit.XmpChange)
    source: Path | None = None  # the twin whose decoded features were reused (a RAW tagged from its JPEG)
    retag: str | None = None  # why a photo tagan had tagged before was tagged again (tagan.photos.ledger)

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
        if self.retag is not None:
            d["retag"] = self.retag
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
            self.csv.writerow(["path", "status", "tags", "scores", "sidecar", "xmp_added", "retag"])
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
                    rec.retag or "",
                ]
            )
        else:
            tags = ", ".join(f"{t} ({s:.2f})" for t, s in rec.tags) or "-"
            status = f"{rec.status} (retag: {rec.retag})" if rec.retag else rec.status
            self.stream.write(f"{shown(rec.path, one_line=True)}\t{status}\t{tags}\n")
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


def info_table(info: dict[str, Any]) -> str:
    """`tagan info` as text: the model's facts, each method's test metrics, the params it was built with."""
    lines = [f"{key:15} {info[key]}" for key in INFO_KEYS if key in info]
    for key in ("features", "decoding"):
        if isinstance(info.get(key), dict):
            lines.append(f"{key:15} " + ", ".join(f"{k}={v}" for k, v in info[key].items()))
    if info.get("aliases"):
        lines.append(f"{'aliases':15} {', '.join(f'{a} = {m}' for a, m in info['aliases'].items())}")
    metrics = info.get("test_metrics") or {}
    names = [n for n in METRICS if any(n in m for m in metrics.values())]
    if metrics:
        lines += ["", "test metrics (pick a method with --method):"]
        lines.append(f"  {'method':20}" + "".join(f"{n:>10}" for n in names))
        for method, m in metrics.items():
            cells = "".join(
                f"{m[n]:>10.4g}" if isinstance(m.get(n), (int, float)) else f"{'-':>10}" for n in names
            )
            lines.append(f"  {method:20}{cells}")
    if info.get("params"):
        lines += ["", "params:"]
        lines += [
            f"  {key}: {json.dumps(value, default=str)}" for key, value in sorted(info["params"].items())
        ]
    return "".join(line + "\n" for line in lines)
