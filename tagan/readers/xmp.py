"""XMP sidecars: keywords where photo managers look, which of them tagan added, and undo; never loses data.

tagan writes each tag three ways, as digiKam, Lightroom, darktable and Immich read them:
`dc:subject` (the word), `lr:hierarchicalSubject` (rdf:Bag, `ROOT|hypernym|...|word`) and `digiKam:TagsList`
(rdf:Seq, `ROOT/hypernym/.../word`). Every value it adds is also recorded in a ledger in its own namespace
(`tagan:addedSubject`, `tagan:addedHierarchicalSubject`, `tagan:addedTagsList`), so `remove_own` takes away
exactly those and nothing a person added, even the same word when the person had it first.

The packet is edited as XML (defusedxml + ElementTree, which refuse entity tricks and DTD-declared entities),
changing only these properties and tagan's own: every other property, the packet wrapper and the layout stay.
Anything unusual (not UTF-8, malformed, a keyword property that is not a plain Bag/Seq of text, a symlink, not
a regular file, read-only, huge) raises XmpError and the file is not touched.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from tagan.errors import NotRegularFileError
from tagan.files import atomic_path, open_regular

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "tagan": "https://github.com/tagan/xmp/1.0/",
}
XmpStyle = Literal["ext", "stem"]
Mode = Literal["append", "replace-own", "remove-own"]
PathOf = Callable[[str], Sequence[str]]  # word -> its hypernyms, broad to specific (may be empty)
MAX_SIDECAR_BYTES = 32 << 20  # darktable histories and embedded thumbnails stay far below this
MAX_DEPTH = 64  # real XMP nests under 15 levels; deeper trees would exhaust the serializer's recursion


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


@dataclass(frozen=True)
class KeywordProperty:
    """One keyword property tagan writes, its array type, its hierarchy separator and its ledger property."""

    name: str
    qname: str
    container: str  # rdf:Bag or rdf:Seq (the type tagan creates; either is accepted when reading)
    separator: str | None  # None: flat keywords (dc:subject holds the word only)
    ledger: str  # tagan property listing the values tagan added to this one


PROPERTIES = (
    KeywordProperty("subject", _q("dc", "subject"), _q("rdf", "Bag"), None, _q("tagan", "addedSubject")),
    KeywordProperty(
        "hierarchicalSubject",
        _q("lr", "hierarchicalSubject"),
        _q("rdf", "Bag"),
        "|",
        _q("tagan", "addedHierarchicalSubject"),
    ),
    KeywordProperty(
        "TagsList", _q("digiKam", "TagsList"), _q("rdf", "Seq"), "/", _q("tagan", "addedTagsList")
    ),
)
MODEL_ATTR = _q("tagan", "tagger")  # rdf:Description attribute naming the model that tagged the photo
TAGS_ATTR = _q("tagan", "tags")  # JSON [[tag, score], ...] of that model's tags (reported on cached re-runs)
CREATED_ATTR = _q("tagan", "created")  # "True": tagan created this sidecar (deleted by untag once empty)
_ARRAYS = (_q("rdf", "Bag"), _q("rdf", "Seq"))
_XML_DECL = re.compile(r"<\?xml\s.*?\?>", re.S)
_DECL_ENCODING = re.compile(r"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class XmpError(ValueError):
    """A sidecar exists but is not XMP we can safely read or rewrite (left untouched)."""


def sidecar_path(photo: Path, style: XmpStyle = "ext") -> Path:
    """`NAME.EXT.xmp` (digiKam, darktable; style 'ext') or `NAME.xmp` (Lightroom, style 'stem')."""
    photo = Path(photo)
    return photo.with_name(photo.name + ".xmp") if style == "ext" else photo.with_suffix(".xmp")


# --------------------------------------------------------------------------------------------- reading
def read_sidecar_bytes(path: Path, *, follow: bool = False) -> bytes | None:
    """The sidecar's bytes, None when there is none; only regular files, never blocks on a FIFO or device.

    follow: read through a symlink (reading only; an edit never goes through a link).
    """
    try:
        f = open_regular(path, follow=follow)
    except FileNotFoundError:
        return None
    except NotRegularFileError as e:
        if e.kind == "a symbolic link":
            raise XmpError(
                f"{path}: is a symbolic link; tagan edits only regular files (resolve it by hand)"
            ) from None
        raise XmpError(f"{path}: {e}; remove or rename it") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_SIDECAR_BYTES:
            raise XmpError(f"{path}: {size} bytes, larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar")
        data = f.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise XmpError(f"{path}: larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar")
    return data


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text (a BOM allowed); another declared encoding only when the file is plain ASCII."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise XmpError(f"{path}: not UTF-8 XMP ({e}); fix or remove it") from None
    declared = _DECL_ENCODING.match(text)
    if (
        declared
        and declared.group(1).lower().replace("_", "-") not in ("utf-8", "utf8")
        and not text.isascii()
    ):
        raise XmpError(f"{path}: declares encoding {declared.group(1)}, XMP must be UTF-8; fix or remove it")
    return text


def _parse(text: str, path: Path) -> tuple[ET.Element, dict[str, str]]:
    """Parse XML text safely; returns the root and the prefix -> URI map declared in it."""
    prefixes: dict[str, str] = {}
    depth = deepest = 0
    try:  # XMP allows no DTD: any DOCTYPE (entity bombs, external entities or DTDs) is refused
        events = SafeET.iterparse(io.StringIO(text), events=("start-ns", "start", "end"), forbid_dtd=True)
        for event, item in events:
            if event == "start-ns":
                prefixes.setdefault(*item)
            elif event == "start":
                depth += 1
                deepest = max(deepest, depth)
                if deepest > MAX_DEPTH:
                    raise XmpError(
                        f"{path}: XML nested deeper than {MAX_DEPTH} levels; not XMP (left untouched)"
                    )
            else:
                depth -= 1
        root = events.root
    except (ET.ParseError, DefusedXmlException) as e:
        raise XmpError(f"{path}: not valid XMP ({e.__class__.__name__}: {e}); fix or remove it") from None
    return root, prefixes


def _load(path: Path, *, follow: bool = False) -> tuple[ET.Element, dict[str, str], str] | None:
    data = read_sidecar_bytes(path, follow=follow)
    if data is None:
        return None
    text = _decode(data, path)
    root, prefixes = _parse(text, path)
    return root, prefixes, text


def _subject_items(root: ET.Element) -> list[str]:
    """Text of every rdf:li under any dc:subject in document order (whitespace-trimmed, empties dropped)."""
    words = []
    for subject in root.iter(_q("dc", "subject")):
        for li in subject.iter(_q("rdf", "li")):
            text = (li.text or "").strip()
            if text:
                words.append(text)
    return words


def read_keywords(path: Path, *, person_only: bool = False) -> list[str]:
    """Keywords of the dc:subject bag of an XMP sidecar (or any XML with one, e.g. an SVG), duplicates dropped.

    person_only: leave out the keywords tagan recorded as its own (e.g. to train only on people's keywords).
    """
    path = Path(path)
    loaded = _load(path, follow=True)
    if loaded is None:
        raise FileNotFoundError(path)
    root = loaded[0]
    words = _subject_items(root)
    if person_only:
        own = [
            (li.text or "").strip() for e in root.iter(PROPERTIES[0].ledger) for li in e.iter(_q("rdf", "li"))
        ]
        for word in own:
            if word in words:
                del words[len(words) - 1 - words[::-1].index(word)]
    return list(dict.fromkeys(words))


def _attr(path: Path, name: str) -> str | None:
    try:
        loaded = _load(Path(path), follow=True)
    except (OSError, XmpError):
        return None
    if loaded is None:
        return None
    for desc in loaded[0].iter(_q("rdf", "Description")):
        if name in desc.attrib:
            return desc.attrib[name]
    return None


def read_model(path: Path) -> str | None:
    """The model id recorded by tagan in a sidecar, or None (no sidecar, unreadable, or not tagged by tagan)."""
    return _attr(path, MODEL_ATTR)


def read_tags(path: Path) -> list[tuple[str, float]]:
    """The (tag, score) list tagan recorded in a sidecar with its model id; [] when there is none."""
    raw = _attr(path, TAGS_ATTR)
    try:
        return [(str(t), float(s)) for t, s in json.loads(raw)] if raw else []
    except (ValueError, TypeError):
        return []


def read_fields(path: Path) -> dict[str, list[str]]:
    """Values of each keyword property and of its tagan ledger ('added<Name>'), in document order."""
    loaded = _load(Path(path), follow=True)
    if loaded is None:
        raise FileNotFoundError(path)
    doc = _Doc(Path(path), loaded[0])
    out = {}
    for prop in PROPERTIES:
        out[prop.name] = doc.values(prop.qname)
        out["added" + prop.name[0].upper() + prop.name[1:]] = doc.values(prop.ledger)
    return out


# --------------------------------------------------------------------------------------------- the document
class _Doc:
    """The top-level rdf:Descriptions of a packet and the array properties tagan edits in them."""

    def __init__(self, path: Path, root: ET.Element) -> None:
        self.path, self.root = path, root
        rdf = root if root.tag == _q("rdf", "RDF") else next(root.iter(_q("rdf", "RDF")), None)
        if rdf is None:
            raise XmpError(f"{path}: no rdf:RDF element; not an XMP packet (left untouched)")
        others = [c.tag for c in rdf if c.tag != _q("rdf", "Description")]
        if others:
            raise XmpError(f"{path}: rdf:RDF holds {others[0]}, not only rdf:Description; left untouched")
        self.rdf = rdf
        self.descriptions = list(rdf)

    def find(self, qname: str) -> tuple[ET.Element, ET.Element | None] | None:
        """(description, container) of an array property; None when absent; XmpError when it is not a plain array."""
        found = []
        for desc in self.descriptions:
            if qname in desc.attrib:
                raise XmpError(f"{self.path}: {_pretty(qname)} is a single value, not a list; left untouched")
            found += [(desc, e) for e in desc if e.tag == qname]
        if not found:
            return None
        if len(found) > 1:
            raise XmpError(f"{self.path}: {_pretty(qname)} appears {len(found)} times; left untouched")
        desc, prop = found[0]
        children = list(prop)
        if prop.attrib or (prop.text or "").strip() or len(children) > 1:
            raise XmpError(f"{self.path}: {_pretty(qname)} is not a plain rdf:Bag/rdf:Seq; left untouched")
        if not children:
            return desc, None
        container = children[0]
        if container.tag not in _ARRAYS:
            raise XmpError(
                f"{self.path}: {_pretty(qname)} is an {_pretty(container.tag)}, not an rdf:Bag/rdf:Seq; "
                "left untouched"
            )
        for li in container:
            if li.tag != _q("rdf", "li") or len(li):
                raise XmpError(f"{self.path}: {_pretty(qname)} holds non-text items; left untouched")
        return desc, container

    def values(self, qname: str) -> list[str]:
        found = self.find(qname)
        if found is None or found[1] is None:
            return []
        return [li.text or "" for li in found[1]]

    def main(self) -> ET.Element:
        """The rdf:Description holding dc:subject, else the first one, else a new one."""
        found = self.find(_q("dc", "subject"))
        if found is not None:
            return found[0]
        if self.descriptions:
            return self.descriptions[0]
        desc = ET.SubElement(self.rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
        self.descriptions.append(desc)
        return desc

    def add(self, prop: KeywordProperty | str, values: list[str], container_tag: str | None = None) -> None:
        """Append `values` to an array property, creating it (in the main description) when missing."""
        qname = prop if isinstance(prop, str) else prop.qname
        if not values:
            return
        found = self.find(qname)
        if found is None:
            desc, elem = self.main(), ET.Element(qname)
            container = ET.SubElement(elem, container_tag or _q("rdf", "Bag"))
            for value in values:
                ET.SubElement(container, _q("rdf", "li")).text = value
            _append(desc, elem)
            _indent_new(elem, desc)
            return
        desc, container = found
        if container is None:  # an empty property element: give it an array
            container = ET.SubElement(
                next(e for e in desc if e.tag == qname), container_tag or _q("rdf", "Bag")
            )
        for value in values:
            li = ET.Element(_q("rdf", "li"))
            li.text = value
            _append(container, li)

    def remove(self, qname: str, values: list[str]) -> list[str]:
        """Remove one occurrence (the last) of each value; drop the property once empty. Returns what went."""
        found = self.find(qname)
        if found is None or found[1] is None or not values:
            return []
        desc, container = found
        drop, gone, kept = Counter(values), [], []
        for li in reversed(list(container)):
            if drop[li.text or ""] > 0:
                drop[li.text or ""] -= 1
                gone.append(li.text or "")
            else:
                kept.append(li)
        if not gone:
            return []
        kids = list(container)
        inner, closing = container.text, kids[-1].tail
        container[:] = kept[::-1]
        if kept and inner is not None and not inner.strip() and closing is not None and not closing.strip():
            for li in container[:-1]:
                li.tail = inner
            container[-1].tail = closing
        if not len(container):
            _remove(desc, next(e for e in desc if e.tag == qname))
        return gone[::-1]

    def holds_nothing_but_tagan(self) -> bool:
        """True when no description has any property outside tagan's namespace."""
        for desc in self.descriptions:
            for key in desc.attrib:
                if not key.startswith(("{" + NS["rdf"], "{" + NS["tagan"])):
                    return False
            if any(not str(e.tag).startswith("{" + NS["tagan"]) for e in desc):
                return False
        return True


def _pretty(qname: str) -> str:
    uri, _, name = qname[1:].partition("}")
    prefix = next((p for p, u in NS.items() if u == uri), uri)
    return f"{prefix}:{name}"


def _append(parent: ET.Element, child: ET.Element) -> None:
    """Append `child` with the whitespace its siblings use (cosmetic; the XML means the same either way)."""
    kids = list(parent)
    parent.append(child)
    if kids:
        inner, closing = parent.text, kids[-1].tail
        if inner is not None and not inner.strip() and closing is not None and not closing.strip():
            kids[-1].tail, child.tail = inner, closing
    elif parent.tail is not None and "\n" in parent.tail and not parent.tail.strip():
        outer = parent.tail.rsplit("\n", 1)[1] + " "  # a guess at the parent's own indentation
        parent.text, child.tail = "\n" + outer + " ", "\n" + outer


def _indent_new(elem: ET.Element, parent: ET.Element) -> None:
    """Indent a newly built property one space per level below `parent` (cosmetic)."""
    inner = parent.text or ""
    if "\n" in inner and not inner.strip():
        tail = elem.tail
        ET.indent(elem, space=" ", level=len(inner.rsplit("\n", 1)[1]))
        elem.tail = tail


def _remove(parent: ET.Element, child: ET.Element) -> None:
    """Remove `child`, keeping its neighbours' whitespace as it was."""
    kids = list(parent)
    i = kids.index(child)
    if i == len(kids) - 1 and i > 0:
        kids[i - 1].tail = child.tail
    parent.remove(child)
    if not len(parent):
        parent.text = None


# --------------------------------------------------------------------------------------------- planning
def _component(text: str) -> str:
    """One level of a keyword path: no separator characters inside it."""
    return re.sub(r"\s+", " ", text.replace("|", "-").replace("/", "-")).strip()


def keyword_values(word: str, path_of: PathOf | None, root: str) -> dict[str, str]:
    """The value of `word` in each keyword property: dog -> dog, tagan|animal|dog, tagan/animal/dog."""
    word = _component(word)
    path = [_component(p) for p in (path_of(word) if path_of else [])]
    if path and path[-1].casefold() == word.casefold():
        path = path[:-1]
    levels = [c for c in (*re.split(r"[|/]", root), *path, word) if c]
    return {p.name: (p.separator.join(levels) if p.separator else word) for p in PROPERTIES}


def _without(values: list[str], remove: list[str]) -> list[str]:
    """`values` less one occurrence per item of `remove`, the last occurrences first (linear time)."""
    drop, out = Counter(remove), []
    for value in reversed(values):
        if drop[value] > 0:
            drop[value] -= 1
        else:
            out.append(value)
    return out[::-1]


def _still_present(ledger: list[str], values: list[str]) -> list[str]:
    """The ledger entries whose value is still in `values` (as a multiset), in ledger order."""
    have, out = Counter(values), []
    for value in ledger:
        if have[value] > 0:
            have[value] -= 1
            out.append(value)
    return out


def _person_paths(person: dict[str, list[str]]) -> list[list[str]]:
    """A person's keywords as paths, from the richest property they fill (TagsList, lr, then dc:subject)."""
    for prop in (PROPERTIES[2], PROPERTIES[1], PROPERTIES[0]):
        values = [v for v in person[prop.name] if v.strip()]
        if values:
            return [v.split(prop.separator) if prop.separator else [v] for v in values]
    return []


@dataclass
class XmpChange:
    """What editing one sidecar did (or, on a dry run, would do)."""

    sidecar: Path
    created: bool  # no sidecar existed before
    added: list[str] = field(default_factory=list)  # dc:subject keywords new to the sidecar
    kept: list[str] = field(default_factory=list)  # dc:subject keywords already there (never removed)
    removed: list[str] = field(default_factory=list)  # dc:subject keywords of tagan's taken away
    properties: dict[str, dict[str, list[str]]] = field(
        default_factory=dict
    )  # name -> {"add": [], "remove": []}
    deleted: bool = (
        False  # untag removed (dry run: would remove) a sidecar tagan created that held nothing else
    )
    written: bool = False  # the file changed on disk

    @property
    def changed(self) -> bool:
        return self.created or self.deleted or any(c["add"] or c["remove"] for c in self.properties.values())


def edit_sidecar(
    sidecar: Path,
    keywords: Iterable[str] = (),
    *,
    mode: Mode = "append",
    path_of: PathOf | None = None,
    root: str = "tagan",
    model: str | None = None,
    tags: list[tuple[str, float]] | None = None,
    dry_run: bool = False,
) -> XmpChange:
    """Add `keywords` (mode append), swap tagan's own for them (replace-own) or only remove tagan's (remove-own).

    Person keywords are never removed: a value counts as tagan's only when tagan's ledger lists it, and a value
    already present (case-insensitively) is never added nor claimed. Writes atomically, keeps the file mode.
    """
    sidecar = Path(sidecar)
    loaded = _load(sidecar)
    created = loaded is None
    if created and mode == "remove-own":
        return XmpChange(sidecar, created=False)
    if created:
        root_elem, prefixes, text = _minimal_root(), {}, ""
    else:
        root_elem, prefixes, text = loaded
    doc = _Doc(sidecar, root_elem)
    current = {p.name: doc.values(p.qname) for p in PROPERTIES}
    ledger = {p.name: doc.values(p.ledger) for p in PROPERTIES}
    own = {n: _still_present(ledger[n], current[n]) for n in current}  # stale ledger entries dropped
    person = {n: _without(current[n], own[n]) for n in current}
    wanted = {p.name: [] for p in PROPERTIES}
    for word in keywords if mode != "remove-own" else ():
        if word.strip():
            for name, value in keyword_values(word, path_of, root).items():
                wanted[name].append(value)
    candidates = {}  # what would be added, seeds first
    for prop in PROPERTIES:
        n = prop.name
        seed = []
        if wanted[n] and not any(v.strip() for v in person[n]):  # see README: first-non-empty readers
            seed = [prop.separator.join(p) if prop.separator else p[-1] for p in _person_paths(person)]
        candidates[n] = [*seed, *wanted[n]]
    remove = {n: [] for n in current}
    if mode == "remove-own":
        remove = own
    elif mode == "replace-own":  # tagan's own values that it would add again stay (a re-run changes nothing)
        again = {n: {v.strip().casefold() for v in candidates[n]} for n in current}
        remove = {n: [v for v in own[n] if v.strip().casefold() not in again[n]] for n in current}
    kept_own = {n: _without(own[n], remove[n]) for n in current}
    add = {}
    for prop in PROPERTIES:
        n = prop.name
        present = {v.strip().casefold() for v in _without(current[n], remove[n])}
        add[n] = []
        for value in candidates[n]:
            if value.strip() and value.strip().casefold() not in present:
                present.add(value.strip().casefold())
                add[n].append(value)
    change = XmpChange(
        sidecar,
        created=created and any(add.values()),
        added=add["subject"],
        kept=person["subject"],
        removed=remove["subject"],
        properties={n: {"add": add[n], "remove": remove[n]} for n in current},
    )
    new_ledger = {n: kept_own[n] + add[n] for n in current}
    desc = doc.main() if doc.descriptions or change.created else None
    marks: dict[str, str | None] = {}
    if mode == "remove-own":
        marks = {MODEL_ATTR: None, TAGS_ATTR: None}
    elif model is not None:
        marks = {
            MODEL_ATTR: model,
            TAGS_ATTR: json.dumps([[t, round(float(s), 4)] for t, s in (tags or [])], ensure_ascii=False),
        }
    if created and not change.created:
        return change  # nothing to add: no empty sidecar is created
    marks_change = desc is not None and any(desc.get(k) != v for k, v in marks.items())
    ledger_change = any(new_ledger[n] != ledger[n] for n in current)
    if not (change.changed or marks_change or ledger_change):
        return change
    if desc is None:
        desc = doc.main()
    if change.created:
        desc.set(CREATED_ATTR, "True")
    for key, value in marks.items():
        if value is None:
            desc.attrib.pop(key, None)
        else:
            desc.set(key, value)
    for prop in PROPERTIES:
        n = prop.name
        doc.remove(prop.qname, remove[n])
        doc.add(prop, add[n], prop.container)
        if new_ledger[n] != ledger[n]:
            doc.remove(prop.ledger, ledger[n])
            doc.add(prop.ledger, new_ledger[n])
    if mode == "remove-own" and desc.get(CREATED_ATTR) == "True" and doc.holds_nothing_but_tagan():
        change.deleted = True
        if not dry_run:
            _check_writable(sidecar)
            os.unlink(sidecar)
            change.written = True
        return change
    if not dry_run:  # the edit above was in memory only
        _write(sidecar, root_elem, prefixes, text, created)
        change.written = True
    return change


def merge_keywords(
    sidecar: Path,
    keywords: list[str],
    *,
    model: str | None = None,
    tags: list[tuple[str, float]] | None = None,
    dry_run: bool = False,
    path_of: PathOf | None = None,
    root: str = "tagan",
    mode: Mode = "append",
) -> XmpChange:
    """Add `keywords` to the sidecar's keyword properties, keeping all other content (see edit_sidecar)."""
    return edit_sidecar(
        sidecar, keywords, mode=mode, path_of=path_of, root=root, model=model, tags=tags, dry_run=dry_run
    )


def remove_own(sidecar: Path, *, dry_run: bool = False) -> XmpChange:
    """Remove exactly the keywords tagan added (its ledger) and its model marks; person keywords stay."""
    return edit_sidecar(sidecar, (), mode="remove-own", dry_run=dry_run)


# --------------------------------------------------------------------------------------------- writing
def _minimal_root() -> ET.Element:
    xmpmeta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(xmpmeta, _q("rdf", "RDF"))
    ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    return xmpmeta


def _check_writable(path: Path) -> os.stat_result | None:
    """The sidecar's stat; XmpError when a person made it read-only (even root respects that)."""
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


def _write(path: Path, root: ET.Element, prefixes: dict[str, str], text: str, created: bool) -> None:
    """Serialize with the file's own prefixes, prolog and epilog; atomic; the old file's mode is kept."""
    st = _check_writable(path)
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
    with atomic_path(path, mode=None if st is None else stat.S_IMODE(st.st_mode)) as tmp:
        tmp.write_text(prolog + body + epilog, encoding="utf-8")
        if st is not None and os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
            os.chown(tmp, st.st_uid, st.st_gid)  # root tagging a user's folder: the user keeps the file
