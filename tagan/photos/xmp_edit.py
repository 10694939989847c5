"""XMP packets, edited in memory: add and remove keyword values keeping every other byte's meaning and layout.

The XmpDoc of tagan.readers.xmp plus the edits tagan makes (append to a Bag/Seq, remove values, create a
property in the right rdf:Description), and the plan of which value goes into which keyword property.
tagan.photos.sidecars reads, locks and writes the files.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagan.readers.xmp import (
    CREATED_ATTR,
    MADE_ATTR,
    MODEL_ATTR,
    NS,
    PROPERTIES,
    TAGS_ATTR,
    KeywordProperty,
    XmpDoc,
    ns_name,
)

Mode = Literal["append", "replace-own", "remove-own"]
PathOf = Callable[[str], Sequence[str]]  # word -> its hypernyms, broad to specific (may be empty)


class EditDoc(XmpDoc):
    """An XmpDoc whose keyword properties can be appended to and removed from."""

    def main(self) -> ET.Element:
        """The rdf:Description holding dc:subject, else the first one, else a new one."""
        found = self.find(ns_name("dc", "subject"))
        if found is not None:
            return found[0]
        if self.descriptions:
            return self.descriptions[0]
        desc = ET.SubElement(self.rdf, ns_name("rdf", "Description"), {ns_name("rdf", "about"): ""})
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
            container = ET.SubElement(elem, container_tag or ns_name("rdf", "Bag"))
            for value in values:
                ET.SubElement(container, ns_name("rdf", "li")).text = value
            _append(desc, elem)
            _indent_new(elem, desc)
            return
        desc, container = found
        if container is None:  # an empty property element: give it an array
            container = ET.SubElement(
                next(e for e in desc if e.tag == qname), container_tag or ns_name("rdf", "Bag")
            )
        for value in values:
            li = ET.Element(ns_name("rdf", "li"))
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
    properties: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # name -> {"add", "remove"}
    deleted: bool = (
        False  # untag removed (dry run: would remove) a sidecar tagan created that held nothing else
    )
    written: bool = False  # the file changed on disk
    attempts: int = 0  # reads before the write went through (more than 1: another program changed the file)

    @property
    def changed(self) -> bool:
        return self.created or self.deleted or any(c["add"] or c["remove"] for c in self.properties.values())


def minimal_root() -> ET.Element:
    """An empty x:xmpmeta packet with one rdf:Description (a new sidecar)."""
    xmpmeta = ET.Element(ns_name("x", "xmpmeta"))
    rdf = ET.SubElement(xmpmeta, ns_name("rdf", "RDF"))
    ET.SubElement(rdf, ns_name("rdf", "Description"), {ns_name("rdf", "about"): ""})
    return xmpmeta


def edit_packet(
    doc: EditDoc,
    keywords: Iterable[str],
    *,
    created: bool,
    mode: Mode,
    path_of: PathOf | None,
    root: str,
    model: str | None,
    tags: list[tuple[str, float]] | None,
    made: tuple[str, dict[str, Any]] | None,
) -> tuple[XmpChange, str]:
    """Edit `doc` in memory (see tagan.photos.sidecars.edit_sidecar); (the change, "none" | "write" | "delete")."""
    current = {p.name: doc.values(p.qname) for p in PROPERTIES}
    ledger = {p.name: doc.values(p.ledger) for p in PROPERTIES}
    own = {n: _still_present(ledger[n], current[n]) for n in current}  # stale ledger entries dropped
    person = {n: _without(current[n], own[n]) for n in current}
    wanted: dict[str, list[str]] = {p.name: [] for p in PROPERTIES}
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
    remove: dict[str, list[str]] = {n: [] for n in current}
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
        doc.path,
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
        marks = {MODEL_ATTR: None, TAGS_ATTR: None, MADE_ATTR: None}
    elif model is not None:
        marks = {
            MODEL_ATTR: model,
            TAGS_ATTR: json.dumps([[t, round(float(s), 4)] for t, s in (tags or [])], ensure_ascii=False),
        }
        if made is not None:
            marks[MADE_ATTR] = _merged_made(doc, *made)
    if created and not change.created:
        return change, "none"  # nothing to add: no empty sidecar is created
    marks_change = desc is not None and any(desc.get(k) != v for k, v in marks.items())
    ledger_change = any(new_ledger[n] != ledger[n] for n in current)
    if not (change.changed or marks_change or ledger_change):
        return change, "none"
    if desc is None:
        desc = doc.main()
    if change.created:
        desc.set(CREATED_ATTR, "True")
    for other in doc.descriptions:  # the marks live on the main description only
        if other is not desc:
            for key in marks:
                other.attrib.pop(key, None)
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
        return change, "delete"
    return change, "write"


def _merged_made(doc: XmpDoc, photo: str, record: dict[str, Any]) -> str:
    """The made-from ledger (JSON, by photo name) with `photo`'s record replaced; unreadable old ones start over."""
    made: dict[str, Any] = {}
    for desc in doc.descriptions:
        if MADE_ATTR in desc.attrib:
            try:
                made = json.loads(desc.attrib[MADE_ATTR])
            except ValueError:
                made = {}
            break
    if not isinstance(made, dict):
        made = {}
    made[photo] = record
    # ASCII with \u escapes: a file name with undecodable bytes (surrogates) stays valid UTF-8 XML
    return json.dumps(made, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
