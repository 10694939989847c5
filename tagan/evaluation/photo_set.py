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
* ``skimage.data`` photos that load offline, and ``sklearn.datasets.load_sample_images``.

Labels. Every photo has human label words (from the file name or the board title) and one or
more hand-checked WordNet 3.0 noun synsets (the data file ``photo_labels.csv``, :data:`LABELS`), plus an optional category word
(categorization folder, or "animal"/"monument" for the explore/erase activities).

Accepted-word rule (:func:`accepted_words`): a predicted tag is correct for a photo when, after
normalisation (lower case, ``_``/``-`` -> space, WordNet ``morphy`` base form for nouns), it is

1. one of the label words, or the category word; or
2. a lemma of a label synset (synonyms), or of an instance-hypernym of it (Eiffel Tower -> tower); or
3. a lemma of a hypernym reached in at most ``max_hops`` hypernym/instance-hypernym steps
   (default 8, which reaches ``animal`` from ``giraffe`` or ``dog``), EXCEPT the lemmas of the
   generic upper-ontology synsets in :data:`GENERIC_SYNSETS` (entity, physical entity, object,
   whole, living thing, organism, artifact, instrumentality, structure, matter, abstraction, ...)
   (the list holds every synset above them too, so it is closed upward).

``max_hops=2`` gives a strict variant (synonyms, parent, grandparent).

Splits (:func:`assign_splits`): the photos are split once, by seed, into ``val`` (about 30%, used for every
choice: decoding settings, weights, gates) and ``test`` (the headline), stratified by source and grouped by
label, so the seven hammers or the many fishes of one label never sit on both sides.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagan.errors import UserError
from tagan.readers.rcc import RccFile
from tagan.tagging.wordnet import GENERIC_SYNSETS

GCOMPRIS_RCC_DIR = Path("/usr/share/gcompris-qt/rcc")

LABELS_FILE = Path(__file__).with_name("photo_labels.csv")


def read_labels(path: Path = LABELS_FILE) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The hand-checked label table (photo_labels.csv): key -> (label words, WordNet synsets).

    Keys are file stems without trailing digits (categorization, erase, explore_*), or ``skimage:NAME`` /
    ``sklearn:NAME``; synsets are space-separated; the `source` and `note` columns are for the reader.
    """
    with open(path, newline="", encoding="utf-8") as f:
        return {row["key"]: (row["label"], tuple(row["synsets"].split())) for row in csv.DictReader(f)}


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
    accepted_strict: list[str] = field(default_factory=list)  # the same rule at 2 hops (strict)
    split: str = ""  # val | test

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
        label, synsets = LABELS[stem_key(name)]
        yield (
            Photo(
                f"categorization/{folder}/{name[:-5]}",
                label,
                synsets,
                CATEGORIZATION_FOLDERS[folder],
                "gcompris:categorization",
                credits[folder].get(name, "see README"),
                path,
            ),
            rcc.read(e),
        )
    # erase
    rcc = RccFile.open(rcc_dir / "erase.rcc")
    files = {e.path: e for e in rcc.entries()}
    base = act + "erase/resource/"
    cred = parse_credits(rcc.read(files[base + "README"]).decode())
    for path, e in files.items():
        if path.startswith(base) and path.endswith(".webp"):
            name = path[len(base) :]
            label, synsets = LABELS[stem_key(name)]
            yield (
                Photo(
                    f"erase/{name[:-5]}",
                    label,
                    synsets,
                    "animal",
                    "gcompris:erase",
                    cred.get(name, "see README"),
                    path,
                ),
                rcc.read(e),
            )
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
                label, synsets = LABELS[stem_key(name)]
                title, text = info.get(name, ("", ""))
                rel = path[len(base) : -5]
                desc = f"{title}: {text}" if title else ""
                yield (
                    Photo(
                        f"{activity}/{rel}",
                        label,
                        synsets,
                        category,
                        f"gcompris:{activity}",
                        cred.get(name, "see README"),
                        path,
                        description=desc,
                    ),
                    rcc.read(e),
                )


def _sample_photos() -> Iterator[tuple[Photo, bytes]]:
    from PIL import Image

    def png(arr: Any) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    try:
        import skimage.data as skd

        for name in SKIMAGE_PHOTOS:
            try:
                arr = getattr(skd, name)()
            except Exception:  # noqa: BLE001 - some need a download; skip those offline
                continue
            label, synsets = LABELS[f"skimage:{name}"]
            yield (
                Photo(
                    f"skimage/{name}",
                    label,
                    synsets,
                    None,
                    "skimage.data",
                    "scikit-image sample data (BSD-3 / public domain, see skimage/data/README)",
                    name,
                ),
                png(arr),
            )
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_image

        for name in SKLEARN_PHOTOS:
            label, synsets = LABELS[f"sklearn:{name}"]
            yield (
                Photo(
                    f"sklearn/{name}",
                    label,
                    synsets,
                    None,
                    "sklearn.datasets",
                    "scikit-learn sample image (CC-BY 2.0, Flickr)",
                    name,
                ),
                png(load_sample_image(f"{name}.jpg")),
            )
    except ImportError:
        pass


def collect_photos(rcc_dir: Path = GCOMPRIS_RCC_DIR, samples: bool = True) -> list[tuple[Photo, bytes]]:
    """All photos with their encoded image bytes (webp for GCompris, PNG for the samples)."""
    out = list(_rcc_photos(Path(rcc_dir))) if Path(rcc_dir).exists() else []
    if samples:
        out.extend(_sample_photos())
    return out


# --- accepted words -----------------------------------------------------------------------
def normalize(word: str, wn: Any | None = None) -> str:
    """Lower case, ``_``/``-`` -> space, collapse spaces; nouns reduced to their WordNet base form."""
    w = re.sub(r"[\s_\-]+", " ", word.strip().lower())
    if wn is not None and w:
        base = wn.morphy(w.replace(" ", "_"), "n")
        if base:
            w = base.replace("_", " ")
    return w


def accepted_words(
    photo: Photo, wn: Any, max_hops: int = 8, generic: frozenset[str] = GENERIC_SYNSETS
) -> set[str]:
    """The set of normalised words accepted as correct tags for ``photo`` (see module doc)."""
    words = {normalize(photo.label, wn), normalize(photo.label)}
    if photo.category:
        words.add(normalize(photo.category, wn))
    for name in photo.synsets:
        start = wn.synset(name)
        frontier = [start] + list(start.instance_hypernyms())
        seen = {s.name() for s in frontier}
        level = 0
        for s in frontier:
            if s.name() not in generic:
                words.update(normalize(lemma.name()) for lemma in s.lemmas())
        while frontier and level < max_hops:
            level += 1
            nxt = []
            for s in frontier:
                for h in s.hypernyms() + s.instance_hypernyms():
                    if h.name() not in seen:
                        seen.add(h.name())
                        nxt.append(h)
            for h in nxt:
                if h.name() not in generic:
                    words.update(normalize(lemma.name()) for lemma in h.lemmas())
            frontier = nxt
    return {w for w in words if w}


def is_accepted(word: str, accepted: set[str], wn: Any | None = None) -> bool:
    """Whether a predicted tag matches the accepted set (raw, and WordNet base form)."""
    return normalize(word) in accepted or (wn is not None and normalize(word, wn) in accepted)


# --- build and split ------------------------------------------------------------------------
def group_key(photo: Photo) -> str:
    """The unit of the split: photos with the same label (hammer1..hammer7) share it."""
    return f"{photo.source}:{normalize(photo.label)}"


def assign_splits(photos: list[Photo], val_fraction: float, seed: int) -> None:
    """Set each photo's split to "val" or "test": per source, whole label groups, about `val_fraction` to val."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for source in sorted({p.source for p in photos}):
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
    max_hops: int = 8,
    strict_hops: int = 2,
    val_fraction: float = 0.3,
    seed: int = 0,
) -> list[Photo]:
    """Extract the photos to `out_dir/images`, label and split them, write `out_dir/photos.jsonl`."""
    from tagan.files import write_text

    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for photo, blob in collect_photos(rcc_dir, samples):
        ext = ".webp" if photo.resource.endswith(".webp") else ".png"
        target = img_dir / (photo.id.replace("/", "__") + ext)
        if not target.exists() or target.read_bytes() != blob:
            target.write_bytes(blob)
        photo.path = str(target)
        photo.accepted = sorted(accepted_words(photo, wn, max_hops))
        photo.accepted_strict = sorted(accepted_words(photo, wn, strict_hops))
        photos.append(photo)
    if not photos:
        raise UserError(
            f"no labelled photos found (GCompris resources in {rcc_dir}: install Debian gcompris-qt-data; "
            "scikit-image / scikit-learn samples)"
        )
    assign_splits(photos, val_fraction, seed)
    write_text(out_dir / "photos.jsonl", "".join(json.dumps(p.to_json()) + "\n" for p in photos))
    return photos


def summary(photos: Iterable[Photo]) -> dict[str, int]:
    """Photos per source."""
    counts: dict[str, int] = {}
    for p in photos:
        counts[p.source] = counts.get(p.source, 0) + 1
    return counts


def tag_metrics(
    predicted: list[list[str]], accepted: list[set[str]], training: set[str], wn: Any
) -> dict[str, float]:
    """hit@1, hit@10, P@5 (means over photos) and the share of correct top-10 words that are not training tags."""
    h1 = h10 = p5 = 0.0
    correct = novel = 0
    for words, acc in zip(predicted, accepted):
        ok = [is_accepted(w, acc, wn) for w in words[:10]]
        h1 += float(bool(ok) and ok[0])
        h10 += float(any(ok))
        p5 += sum(ok[:5]) / 5.0
        correct += sum(ok)
        novel += sum(o and w not in training for w, o in zip(words[:10], ok))
    n = max(len(predicted), 1)
    return {
        "hit_at_1": h1 / n,
        "hit_at_10": h10 / n,
        "p_at_5": p5 / n,
        "non_training_share": novel / correct if correct else 0.0,
        "photos": float(len(predicted)),
    }
