"""A labelled real-photo evaluation set built from offline packages.

Sources (nothing is downloaded; nothing is copied into git):

* Debian ``gcompris-qt-data``: Qt resource files ``/usr/share/gcompris-qt/rcc/*.rcc`` hold the
  photographs of several activities (read with :mod:`tagan.readers.rcc`):

  - ``categorization``: embedded folders ``tools``, ``renewable``, ``monuments``, ``fishes``
    (each a category of the activity; ``board/category_*.qml`` lists them as "good" images) and
    ``others`` (household objects used as distractors, no category). The other categories of the
    activity point at ``gcompris/data/words-webp`` which the package does not ship.
  - ``erase``: animal photos, label in the file name.
  - ``explore_world_animals`` / ``explore_farm_animals``: animal photos (``image2``) with a
    title and a one-paragraph description in ``board/board*.qml``.
  - ``explore_monuments``: monument photos with a title and description.

  Licences come from the per-folder ``README`` files (mostly Public Domain / CC0 / CC-BY-SA).
* Debian ``scratch`` (its media library, CC-BY-SA 3.0): the real photos among
  ``/usr/share/scratch/Media/Backgrounds/*/`` (scenes: beaches, forests, cities, rooms, fields) and among
  ``Media/Costumes/People/`` (people cut out on a transparent background; shown on white at 640 px, the size
  of a photo rather than a sprite). Which files are real photos, and their labels, come from the label table.
* ``skimage.data`` photos that load offline, and ``sklearn.datasets.load_sample_images``.

Labels. Every photo has human label words (from the file name or the board title, or by looking at it) and one
or more hand-checked WordNet 3.0 noun synsets (the data file ``photo_labels.csv``, :data:`LABELS`), a kind
(``people``: people are the subject; ``scene``: a landscape, place, street or room; ``other``), plus an optional
category word (categorization folder, or "animal"/"monument" for the explore/erase activities).

Accepted-word rule (tagan.evaluation.accepted, :func:`accepted_words`): a predicted tag is correct for a photo when, after
normalisation (lower case, ``_``/``-`` -> space, WordNet ``morphy`` base form for nouns), it is

1. one of the label words, or the category word; or
2. a lemma of a label synset (synonyms), or of an instance-hypernym of it (Eiffel Tower -> tower); or
3. a lemma of a hypernym reached in at most ``max_hops`` hypernym/instance-hypernym steps
   (default 8, which reaches ``animal`` from ``giraffe`` or ``dog``), EXCEPT the lemmas of the
   generic upper-ontology synsets in :data:`GENERIC_SYNSETS` (entity, physical entity, object,
   whole, living thing, organism, artifact, instrumentality, structure, matter, abstraction, ...)
   (the list holds every synset above them too, so it is closed upward).

``max_hops=1`` without the category word is the specific rule of the headline (the label, a synonym, or one
step up), where jargon words also count as wrong (tagan.evaluation.photo_scores).

Splits (:func:`assign_splits`): the photos are split once, by seed, into ``val`` (about 30%, used for every
choice: decoding settings, weights, gates) and ``test`` (the headline), stratified by source and grouped by
label, so the seven hammers or the many fishes of one label never sit on both sides.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagan.errors import UserError
from tagan.evaluation.accepted import accepted_words, normalize
from tagan.readers.rcc import RccFile

GCOMPRIS_RCC_DIR = Path("/usr/share/gcompris-qt/rcc")

LABELS_FILE = Path(__file__).with_name("photo_labels.csv")


@dataclass(frozen=True)
class Label:
    """One row of the label table."""

    label: str
    synsets: tuple[str, ...]
    kind: str = "other"  # people | scene | other


KINDS = ("people", "scene", "other")


def read_labels(path: Path = LABELS_FILE) -> dict[str, Label]:
    """The hand-checked label table (photo_labels.csv): key -> Label.

    Keys are file stems without trailing digits (categorization, erase, explore_*), ``skimage:NAME`` /
    ``sklearn:NAME``, or ``scratch:FOLDER/STEM``; synsets are space-separated; `source` and `note` are for the reader.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = {
            r["key"]: Label(r["label"], tuple(r["synsets"].split()), r.get("kind") or "other")
            for r in csv.DictReader(f)
        }
    bad = sorted(k for k, r in rows.items() if r.kind not in KINDS)
    if bad:
        raise ValueError(f"{path}: kind must be one of {KINDS} (rows {bad[:5]})")
    return rows


LABELS = read_labels()

#: Folder of the categorization activity -> category word (None: distractor folder, no category).
CATEGORIZATION_FOLDERS: dict[str, str | None] = {
    "tools": "tool",
    "renewable": "renewable energy",
    "monuments": "monument",
    "fishes": "fish",
    "others": None,
}

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field", "clock",
                  "brick", "grass", "gravel")  # fmt: skip
SKLEARN_PHOTOS = ("china", "flower")
SCRATCH_MEDIA = Path("/usr/share/scratch/Media")
CUTOUT_SIDE = 640  # people cut-outs are shown at a photo's size, on white


@dataclass
class Photo:
    """One labelled photo of the evaluation set."""

    id: str
    label: str
    synsets: tuple[str, ...]
    category: str | None
    source: str
    licence: str
    resource: str = ""  # path inside the .rcc file or loader name
    description: str = ""
    path: str = ""  # extracted image file (filled by :func:`build_photo_set`)
    accepted: list[str] = field(default_factory=list)  # the accepted-word rule, max_hops (broad)
    accepted_specific: list[str] = field(default_factory=list)  # 1 hop: the label, a synonym, one step up
    split: str = ""  # val | test
    kind: str = "other"  # people | scene | other
    group: str = ""  # unit of the split when not the label (one person in several poses)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["synsets"] = list(self.synsets)
        return d


# --- parsing helpers ----------------------------------------------------------------------
def parse_credits(text: str) -> dict[str, str]:
    """Parse a GCompris README (blocks of ``Key: value`` lines) into ``{file name: licence}``.

    ``Files:`` may carry the names on the same line or on the following lines of the block.
    """
    out: dict[str, str] = {}
    for block in re.split(r"\n\s*\n", text):
        licence, author, files, in_files = "", "", [], False
        for line in block.splitlines():
            m = re.match(r"\s*(Copyright|License|Licence|Source|Comments|Files)\s*:\s*(.*)$", line)
            if m:
                key, val = m.group(1).lower(), m.group(2).strip()
                in_files = key == "files"
                if key in ("license", "licence"):
                    licence = val
                elif key == "copyright":
                    author = val
                elif in_files and val:
                    files.extend(val.split())
            elif in_files and line.strip():
                files.extend(line.split())
        for f in files:
            out[f.rsplit("/", 1)[-1]] = f"{licence} ({author})" if author else licence
    return out


_BOARD_ITEM = re.compile(
    r'"title"\s*:\s*qsTr\("(?P<title>[^"]*)"\)\s*,\s*"text"\s*:\s*qsTr\("(?P<text>(?:[^"\\]|\\.)*)"\)'
    r'.*?"image2"\s*:\s*"(?P<image>[^"]+)"',
    re.S,
)


def parse_explore_board(text: str) -> list[tuple[str, str, str]]:
    """``(image file name, title, description)`` for each item of an explore_* board."""
    return [(m["image"].rsplit("/", 1)[-1], m["title"], m["text"]) for m in _BOARD_ITEM.finditer(text)]


def stem_key(file_name: str) -> str:
    """``hammer7.webp`` -> ``hammer``; keeps explicit keys such as ``monument1``."""
    stem = file_name.rsplit(".", 1)[0]
    return stem if stem in LABELS else re.sub(r"\d+$", "", stem)


# --- collection ---------------------------------------------------------------------------
def labelled(
    key: str,
    photo_id: str,
    category: str | None,
    source: str,
    licence: str,
    resource: str,
    description: str = "",
) -> Photo:
    """The Photo of label-table row `key`."""
    row = LABELS[key]
    return Photo(
        photo_id, row.label, row.synsets, category, source, licence, resource, description, kind=row.kind
    )


def _png(image: Any) -> bytes:
    image.save(buf := io.BytesIO(), format="PNG")
    return buf.getvalue()


def _scratch_photos(media: Path) -> Iterator[tuple[Photo, bytes]]:
    """The scratch media files the label table names: scene photos as they are, people cut-outs on white."""
    from PIL import Image

    licence = "CC-BY-SA 3.0 (Scratch 1.4 media library, Debian scratch)"
    for key in sorted(k for k in LABELS if k.startswith("scratch:")):
        rel = key.split(":", 1)[1]  # Backgrounds/Nature/beach-malibu | People/anjuli-1
        folder = media / ("Costumes/" + rel if rel.startswith("People/") else rel).rsplit("/", 1)[0]
        found = sorted(folder.glob(rel.rsplit("/", 1)[1] + ".*")) if folder.is_dir() else []
        if not found:
            continue
        photo = labelled(key, "scratch/" + rel, None, "scratch", licence, str(found[0]))
        if rel.startswith("People/"):
            photo.group = "scratch:" + re.sub(r"\d+$", "", re.split(r"[-_ ]", Path(rel).name)[0])
            with Image.open(found[0]) as im:
                rgba = im.convert("RGBA")
            scale = CUTOUT_SIDE / max(rgba.size)
            rgba = rgba.resize(
                (round(rgba.width * scale), round(rgba.height * scale)), Image.Resampling.LANCZOS
            )
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            yield photo, _png(Image.alpha_composite(white, rgba).convert("RGB"))
        else:
            yield photo, found[0].read_bytes()


def _rcc_photos(rcc_dir: Path) -> Iterator[tuple[Photo, bytes]]:
    act = "gcompris/src/activities/"
    # categorization
    rcc = RccFile.open(rcc_dir / "categorization.rcc")
    files = {e.path: e for e in rcc.entries()}
    base = act + "categorization/resource/images/"
    credits: dict[str, dict[str, str]] = {}
    for folder in CATEGORIZATION_FOLDERS:
        readme = files.get(f"{base}{folder}/README")
        credits[folder] = parse_credits(rcc.read(readme).decode()) if readme else {}
    for path, e in files.items():
        if not (path.startswith(base) and path.endswith(".webp")):
            continue
        folder, name = path[len(base) :].split("/", 1)
        if folder not in CATEGORIZATION_FOLDERS:
            continue  # numbers/alphabets: drawings, not photos
        yield (
            labelled(
                stem_key(name), f"categorization/{folder}/{name[:-5]}", CATEGORIZATION_FOLDERS[folder],
                "gcompris:categorization", credits[folder].get(name, "see README"), path,
            ),
            rcc.read(e),
        )  # fmt: skip
    # erase
    rcc = RccFile.open(rcc_dir / "erase.rcc")
    files = {e.path: e for e in rcc.entries()}
    base = act + "erase/resource/"
    cred = parse_credits(rcc.read(files[base + "README"]).decode())
    for path, e in files.items():
        if path.startswith(base) and path.endswith(".webp"):
            name = path[len(base) :]
            yield (
                labelled(stem_key(name), f"erase/{name[:-5]}", "animal", "gcompris:erase",
                         cred.get(name, "see README"), path),
                rcc.read(e),
            )  # fmt: skip
    # explore_* activities: titles and descriptions from the boards
    for activity, category in (
        ("explore_world_animals", "animal"),
        ("explore_farm_animals", "animal"),
        ("explore_monuments", "monument"),
    ):
        rcc = RccFile.open(rcc_dir / f"{activity}.rcc")
        files = {e.path: e for e in rcc.entries()}
        base = f"{act}{activity}/resource/"
        info: dict[str, tuple[str, str]] = {}
        cred: dict[str, str] = {}
        for path, e in files.items():
            if "/board/" in path and path.endswith(".qml"):
                for img, title, text in parse_explore_board(rcc.read(e).decode()):
                    info[img] = (title, text)
            elif path.endswith("/README"):
                cred.update(parse_credits(rcc.read(e).decode()))
        for path, e in files.items():
            if path.startswith(base) and path.endswith(".webp"):
                name = path.rsplit("/", 1)[-1]
                title, text = info.get(name, ("", ""))
                rel = path[len(base) : -5]
                desc = f"{title}: {text}" if title else ""
                yield (
                    labelled(stem_key(name), f"{activity}/{rel}", category, f"gcompris:{activity}",
                             cred.get(name, "see README"), path, desc),
                    rcc.read(e),
                )  # fmt: skip


def _sample_photos() -> Iterator[tuple[Photo, bytes]]:
    from PIL import Image

    def png(arr: Any) -> bytes:
        return _png(Image.fromarray(arr))

    try:
        import skimage.data as skd

        for name in SKIMAGE_PHOTOS:
            try:
                arr = getattr(skd, name)()
            except Exception:  # noqa: BLE001 - some need a download; skip those offline
                continue
            yield (
                labelled(f"skimage:{name}", f"skimage/{name}", None, "skimage.data",
                         "scikit-image sample data (BSD-3 / public domain, see skimage/data/README)", name),
                png(arr),
            )  # fmt: skip
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_image

        for name in SKLEARN_PHOTOS:
            yield (
                labelled(f"sklearn:{name}", f"sklearn/{name}", None, "sklearn.datasets",
                         "scikit-learn sample image (CC-BY 2.0, Flickr)", name),
                png(load_sample_image(f"{name}.jpg")),
            )  # fmt: skip
    except ImportError:
        pass


def collect_photos(
    rcc_dir: Path = GCOMPRIS_RCC_DIR, samples: bool = True, scratch_media: Path | None = SCRATCH_MEDIA
) -> list[tuple[Photo, bytes]]:
    """All photos with their encoded image bytes (webp for GCompris, the file or PNG for the others)."""
    out = list(_rcc_photos(Path(rcc_dir))) if Path(rcc_dir).exists() else []
    if scratch_media is not None:
        out.extend(_scratch_photos(Path(scratch_media)))
    if samples:
        out.extend(_sample_photos())
    return out


# --- build and split ------------------------------------------------------------------------
def group_key(photo: Photo) -> str:
    """The unit of the split: photos with the same label (hammer1..hammer7), or one person's poses, share it."""
    return photo.group or f"{photo.source}:{normalize(photo.label)}"


def assign_splits(photos: list[Photo], val_fraction: float, seed: int) -> None:
    """Set each photo's split to "val" or "test": per source, whole label groups, about `val_fraction` to val."""
    import zlib

    import numpy as np

    for source in sorted({p.source for p in photos}):
        rng = np.random.default_rng(
            [seed, zlib.crc32(source.encode())]
        )  # per source: a new source moves no other
        members = [p for p in photos if p.source == source]
        groups: dict[str, list[Photo]] = {}
        for p in members:
            groups.setdefault(group_key(p), []).append(p)
        names = sorted(groups)
        rng.shuffle(names)
        target, n_val = val_fraction * len(members), 0
        for name in names:
            take = n_val < target and abs(n_val + len(groups[name]) - target) <= abs(n_val - target)
            for p in groups[name]:
                p.split = "val" if take else "test"
            n_val += len(groups[name]) if take else 0


def build_photo_set(
    out_dir: Path,
    wn: Any,
    *,
    rcc_dir: Path = GCOMPRIS_RCC_DIR,
    samples: bool = True,
    scratch_media: Path | None = SCRATCH_MEDIA,
    max_hops: int = 8,
    val_fraction: float = 0.3,
    seed: int = 0,
) -> list[Photo]:
    """Extract the photos to `out_dir/images`, label and split them, write `out_dir/photos.jsonl`."""
    from tagan.files import write_text

    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for photo, blob in collect_photos(rcc_dir, samples, scratch_media):
        ext = Path(photo.resource).suffix if photo.source == "scratch" and photo.kind != "people" else ""
        ext = ext or (".webp" if photo.resource.endswith(".webp") else ".png")
        target = img_dir / (photo.id.replace("/", "__") + ext)
        if not target.exists() or target.read_bytes() != blob:
            target.write_bytes(blob)
        photo.path = str(target)
        photo.accepted = sorted(accepted_words(photo, wn, max_hops))
        photo.accepted_specific = sorted(accepted_words(photo, wn, 1, category=False))
        photos.append(photo)
    if not photos:
        raise UserError(
            f"no labelled photos found (GCompris resources in {rcc_dir}: install Debian gcompris-qt-data; "
            f"Scratch media in {scratch_media}: Debian scratch; scikit-image / scikit-learn samples)"
        )
    assign_splits(photos, val_fraction, seed)
    write_text(out_dir / "photos.jsonl", "".join(json.dumps(p.to_json()) + "\n" for p in photos))
    return photos


def summary(photos: Iterable[Photo]) -> dict[str, int]:
    """Photos per source."""
    return dict(Counter(p.source for p in photos))
