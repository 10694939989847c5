"""A self-contained HTML contact sheet of tagged photos: thumbnails (data: URIs), tags with scores, sidecar changes.

Streamed row by row (bounded memory on big folders); the caller writes it through `atomic_path`.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from jinja2 import Environment

from tagan.readers.images import load_image

log = logging.getLogger(__name__)

PROPERTY_LABELS = {
    "subject": "dc:subject",
    "hierarchicalSubject": "lr:hierarchicalSubject",
    "TagsList": "digiKam:TagsList",
}

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_HEAD = _ENV.from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; background: #f4f4f2; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #555; margin: 0 0 16px; }
.sheet { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.photo { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; overflow-wrap: anywhere; }
.photo.skipped { border-color: #d9534f; }
.thumb { display: block; width: 100%; height: 180px; object-fit: contain; background: #222; border-radius: 4px; }
.nothumb { display: flex; align-items: center; justify-content: center; height: 180px; background: #ccc;
  color: #444; border-radius: 4px; }
.name { font-weight: 600; margin: 6px 0 2px; }
.status { font-size: 12px; color: #666; }
.status.skipped { color: #b52b27; }
ul.tags { list-style: none; padding: 0; margin: 6px 0; }
ul.tags li { display: flex; align-items: center; gap: 6px; font-size: 13px; }
.bar { flex: 0 0 60px; height: 8px; background: #eee; border-radius: 4px; overflow: hidden; }
.bar span { display: block; height: 100%; background: #3a7bd5; }
.score { color: #666; font-variant-numeric: tabular-nums; }
.changes { font-size: 12px; border-top: 1px solid #eee; padding-top: 4px; }
.changes .prop { color: #666; }
.add { color: #1e7d32; }
.remove { color: #b52b27; text-decoration: line-through; }
footer { margin-top: 16px; color: #555; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{% for key, value in meta.items() %}{{ key }}: <b>{{ value }}</b>{% if not loop.last %} &middot; {% endif %}{% endfor %}</p>
<main class="sheet">
""")
_ROW = _ENV.from_string("""<section class="photo{% if skipped %} skipped{% endif %}">
{% if thumb %}
<img class="thumb" alt="{{ name }}" src="data:image/jpeg;base64,{{ thumb }}">
{% else %}
<div class="nothumb">no preview</div>
{% endif %}
<div class="name" title="{{ path }}">{{ name }}</div>
<div class="status{% if skipped %} skipped{% endif %}">{{ status }}</div>
{% if tags %}
<ul class="tags">
{% for tag, score in tags %}
<li><span class="bar"><span style="width: {{ (score * 100) | round(1) }}%"></span></span><span class="tag">{{ tag }}</span> <span class="score">{{ '%.2f' | format(score) }}</span></li>
{% endfor %}
</ul>
{% endif %}
{% if sidecar %}
<div class="changes">
<div class="sidecar" title="{{ sidecar }}">{% if changes %}{{ verb }} <code>{{ sidecar_name }}</code>{% else %}<code>{{ sidecar_name }}</code>: no change{% endif %}</div>
{% for label, change in changes %}
<div><span class="prop">{{ label }}</span>
{% for value in change.add %}<span class="add">+{{ value }}</span> {% endfor %}
{% for value in change.remove %}<span class="remove">&minus;{{ value }}</span> {% endfor %}
</div>
{% endfor %}
</div>
{% endif %}
</section>
""")
_FOOT = _ENV.from_string("""</main>
<footer>{{ summary }}</footer>
</body>
</html>
""")


def thumbnail_base64(path: Path, size: int = 256) -> str | None:
    """A JPEG thumbnail of the photo, base64-encoded; None when it cannot be decoded."""
    try:
        im = load_image(path, max_side=size)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=75)
    except Exception as e:  # a photo without preview still gets its row
        log.debug("%s: no thumbnail (%s)", path, e)
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


class ContactSheet:
    """Writes the contact sheet to a text stream: `begin`, one `add` per photo, `end`."""

    def __init__(self, stream: IO[str], *, title: str, meta: Mapping[str, str], preview: bool) -> None:
        self.stream, self.title, self.meta, self.preview = stream, title, dict(meta), preview
        self.count = 0

    def begin(self) -> None:
        """Write the head of the document."""
        self.stream.write(_HEAD.render(title=self.title, meta=self.meta))

    def add(
        self,
        photo: Path,
        status: str,
        tags: Sequence[tuple[str, float]],
        *,
        sidecar: Path | None = None,
        changes: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        thumb: str | None = None,
    ) -> None:
        """One photo: its thumbnail, status, tags with scores and what changes (or would change) in its sidecar."""
        shown = [
            (PROPERTY_LABELS.get(name, name), change)
            for name, change in (changes or {}).items()
            if change.get("add") or change.get("remove")
        ]
        self.stream.write(
            _ROW.render(
                path=str(photo),
                name=Path(photo).name,
                status=status,
                skipped=status.startswith("skipped"),
                tags=[(t, float(s)) for t, s in tags],
                sidecar=str(sidecar) if sidecar else None,
                sidecar_name=Path(sidecar).name if sidecar else None,
                verb="would change" if self.preview else "changed",
                changes=shown,
                thumb=thumb,
            )
        )
        self.count += 1

    def end(self, summary: str) -> None:
        """Close the document with a one-line summary."""
        self.stream.write(_FOOT.render(summary=summary))
