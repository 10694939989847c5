"""The open decode vocabulary: common WordNet nouns + ImageNet-1k class lemmas + their broader words + training tags.

Sources (all offline): WordNet 3.0 (Debian `wordnet-base`, read with nltk, see tagan.tagging.wordnet), word
frequencies from PyPI `wordfreq` (Zipf scale, `large` English list), the ImageNet-1k wnids from the
label files of the PyPI `timm` wheel, and the training tags of the collection (data/tags/vocab.json).

Entries, in this order (a word already present only gains a source):
1. `imagenet`: every lemma of every ImageNet-1k class synset (forced in; that synset is its sense).
2. `hypernym`: for each non-generic synset on those classes' hypernym chains, its most frequent lemma
   when the lemma's Zipf frequency >= `hypernym_min_zipf` (canine, carnivore, mammal, ...).
3. `setting`: the places an ImageNet class's WordNet gloss names (:func:`setting_words`: seashore "the shore
   of a sea or ocean" -> shore, sea, ocean; lakeside -> lake; alp -> mountain; valley -> river).
4. `training`: every training tag, verbatim (its sense: its first WordNet noun sense, if any).
5. `wordnet`: the `size` most frequent other WordNet noun lemmas with Zipf >= `min_zipf`: no proper
   nouns (capitalised lemmas), no digits, at most `max_tokens` words; sense = first (most frequent) sense.
Each entry carries its WordNet hypernym chain (nearest first, generic upper-ontology synsets dropped,
at most `hypernym_hops` synsets) and the vocabulary names every synset it can: the first lemma of the
synset that is a vocabulary word (WordNet lists the usual name first: koala before native bear).

The words people use (:func:`mark_words`). A word is `broad` when its sense is a WordNet category with at least
`BROAD_MIN_HYPONYMS` senses below it (animal, vehicle, dog, bird). A word is `jargon`, never written to a photo,
when it names the upper ontology (a sense in GENERIC_SYNSETS, or a word of `GENERIC_WORDS`), or when it is broad
and either a phrase or rare (Zipf < `JARGON_MAX_ZIPF`): "consumer goods", "plant organ", "self-propelled
vehicle", "placental", "vertebrate", "mammal" go; animal, dog, bird, insect, furniture, lamp stay. Scientific
names are jargon too (:func:`is_taxon`: "chamaeleo chamaeleon" beside "african chameleon").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tagan.errors import UserError
from tagan.files import read_json, write_json, write_text
from tagan.tagging.wordnet import GENERIC_SYNSETS, ancestors, display, hypernym_chain, wnid_to_synset

_OK_WORD = re.compile(r"^[a-z][a-z' \-]*[a-z]$")


def zipf_frequency(word: str) -> float:
    """wordfreq's Zipf frequency of an English word or phrase (large list); 0 for unknown words."""
    from wordfreq import zipf_frequency as zf

    return float(zf(word, "en", wordlist="large"))


def normalize(word: str) -> str:
    """Lower case, underscores and hyphens as spaces, single spaces ("North_America" -> "north america")."""
    return re.sub(r"[\s_\-]+", " ", word.strip().lower()).strip()


@dataclass
class VocabEntry:
    """One decodable tag with its WordNet sense and broader senses."""

    word: str  # as decoded and written to sidecars: "golden retriever" (training tags verbatim)
    synset: str | None  # primary WordNet noun synset, e.g. "golden_retriever.n.01"
    zipf: float  # wordfreq Zipf frequency
    sources: list[str] = field(default_factory=list)  # imagenet | hypernym | training | wordnet
    path: list[str] = field(default_factory=list)  # hypernym synsets, nearest first, generic removed
    broad: bool = False  # a WordNet category (>= BROAD_MIN_HYPONYMS senses below)
    jargon: bool = False  # never written to a photo (see the module docstring)


BROAD_MIN_HYPONYMS = 20
JARGON_MAX_ZIPF = 3.5
TAXON_GENUS = "genus.n.02"  # WordNet's biological genus (the Latin names ImageNet lists beside common ones)
TOP_MIN_ZIPF = 4.5  # the top of a keyword path: a common word (drink rather than fluid above coffee)
#: Frequent single words that name categories, not things in a photo.
GENERIC_WORDS = frozenset(
    {"object", "thing", "item", "entity", "stuff", "whole", "unit", "part", "piece", "matter", "material",
     "substance", "artifact", "artefact", "product", "goods", "commodity", "establishment", "structure",
     "device", "equipment", "mechanism", "system", "facility", "support", "transport", "conveyance",
     "instrumentality", "organism", "being", "creation", "covering", "implement", "container", "body"}
)  # fmt: skip


def mark_words(
    wn: Any,
    entries: Iterable[VocabEntry],
    broad_min: int = BROAD_MIN_HYPONYMS,
    generic: frozenset[str] = GENERIC_SYNSETS,
) -> None:
    """Set each entry's `broad` and `jargon` flags (the rule: module docstring)."""
    below: dict[str, int] = {}
    for e in entries:
        if e.synset is None:
            continue
        if e.synset not in below:
            syn = wn.synset(e.synset)
            below[e.synset] = sum(1 for _ in syn.closure(lambda s: s.hyponyms() + s.instance_hyponyms()))
        e.broad = below[e.synset] >= broad_min
        upper = e.synset in generic or normalize(e.word) in GENERIC_WORDS
        phrase = " " in e.word or "-" in e.word
        e.jargon = (
            upper or (e.broad and (phrase or e.zipf < JARGON_MAX_ZIPF)) or (phrase and is_taxon(wn, e.word))
        )


def is_taxon(wn: Any, word: str) -> bool:
    """Whether a phrase is a scientific name: its first word's first noun sense is a biological genus
    ("chamaeleo chamaeleon", "loxodonta africana"; not "aloe vera": aloe is first the plant)."""
    senses = wn.synsets(word.split()[0], "n")
    return bool(senses) and any(
        TAXON_GENUS in {s.name() for s in path} for path in senses[0].hypernym_paths()
    )


@dataclass
class ImageNetClasses:
    """The 1000 ImageNet-1k classes as WordNet knowledge (aligned with the backbone's outputs)."""

    wnids: list[str]
    synsets: list[str]
    lemmas: list[list[str]]  # display forms, first = the class name
    ancestors: list[dict[str, int]]  # synset -> fewest hypernym hops (self 0), all paths
    settings: list[list[str]] = field(default_factory=list)  # places the class's gloss names (setting_words)

    @property
    def names(self) -> list[str]:
        return [ls[0] for ls in self.lemmas]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageNetClasses:
        return cls(**d)


@dataclass
class Vocabulary:
    """Ordered entries with lookups by word, plus the word naming each synset."""

    entries: list[VocabEntry]
    synset_words: dict[str, str] = field(default_factory=dict)  # synset -> vocabulary word naming it

    def __post_init__(self) -> None:
        self.index = {e.word: i for i, e in enumerate(self.entries)}
        if len(self.index) != len(self.entries):
            raise ValueError("vocabulary words must be unique")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def words(self) -> list[str]:
        return [e.word for e in self.entries]

    @property
    def jargon(self) -> set[str]:
        """The words never written to a photo."""
        return {e.word for e in self.entries if e.jargon}

    @property
    def capped(self) -> set[str]:
        """Broad words a photo gets at most `Keywords.max_broad` of (animal, dog, vehicle); places (lake, sea,
        river) are broad in WordNet but name a scene, not a category, and are not capped."""
        return {e.word for e in self.entries if e.broad and "setting" not in e.sources}

    def path(self, word: str, levels: int = 3) -> list[str]:
        """A short hierarchy for `word` in words people use, broad -> specific, at most `levels` long: a top word
        (the broadest above it that is common, Zipf >= TOP_MIN_ZIPF, else the broadest), the nearest ones, then
        the word: animal, domestic cat, egyptian cat; drink, coffee, espresso; vehicle, car, sports car."""
        above = [w for w in self.broader(word, max_up=64) if not self.entries[self.index[w]].jargon]
        if not above or levels < 2:
            return []
        common = [w for w in above if self.entries[self.index[w]].zipf >= TOP_MIN_ZIPF]
        top = common[-1] if common else above[-1]
        picks = [top, *reversed(above[: min(levels - 2, above.index(top))])]  # broad -> specific
        return [*dict.fromkeys(picks), word]

    def broader(self, word: str, max_up: int = 8) -> list[str]:
        """Vocabulary words of the senses above `word`, nearest first (at most `max_up`); [] if unknown."""
        i = self.index.get(word)
        if i is None:
            return []
        out: list[str] = []
        for syn in self.entries[i].path:
            w = self.synset_words.get(syn)
            if w and w != word and w not in out:
                out.append(w)
            if len(out) >= max_up:
                break
        return out

    def save(self, directory: Path) -> None:
        """words.jsonl (one entry per line) + synset_words.json in `directory`."""
        directory = Path(directory)
        write_text(directory / "words.jsonl", "".join(json.dumps(asdict(e)) + "\n" for e in self.entries))
        write_json(directory / "synset_words.json", dict(sorted(self.synset_words.items())))

    @classmethod
    def load(cls, directory: Path) -> Vocabulary:
        directory = Path(directory)
        if not (directory / "words.jsonl").is_file():
            raise UserError(f"no vocabulary in {directory}; build it with `dvc repro vocabulary`")
        lines = [line for line in (directory / "words.jsonl").read_text().splitlines() if line.strip()]
        entries = [VocabEntry(**d) for d in json.loads("[" + ",".join(lines) + "]")]  # one parse: 2x faster
        return cls(entries, read_json(directory / "synset_words.json"))


#: Senses of scenery (land forms, water, roads, buildings, rooms, vegetation): a gloss noun under one of them
#: names where a thing is seen, the words ImageNet-1k has no class for (lake, sea, river, forest, mountain).
PLACE_SYNSETS = frozenset(
    {"geological_formation.n.01", "body_of_water.n.01", "land.n.04", "tract.n.01", "road.n.01", "building.n.01",
     "room.n.01", "vegetation.n.01", "geographical_area.n.01"}
)  # fmt: skip
PLACE_MIN_ZIPF = 4.0  # common words only (shore 4.5, lake 4.9; not "tract")
#: Words whose first sense is a place but that the ImageNet glosses use in another sense ("a bar to which heavy
#: discs are attached", "a child's coin bank").
NOT_PLACES = frozenset({"bar", "bank", "parts", "site"})


def setting_words(
    wn: Any, synset: Any, freq: Callable[[str], float] = zipf_frequency, generic: frozenset[str] = GENERIC_SYNSETS
) -> list[str]:  # fmt: skip
    """The places a synset's gloss names, in gloss order: nouns (their commonest use is a noun) whose first sense
    is under PLACE_SYNSETS, not a proper name, common (Zipf >= PLACE_MIN_ZIPF), not the synset's own lemma."""
    own = {lemma.name().lower() for lemma in synset.lemmas()}
    out: list[str] = []
    for token in re.findall(r"[a-z]+", synset.definition().lower()):
        word = wn.morphy(token, "n")
        if (
            not word
            or word in own
            or word in out
            or word in GENERIC_WORDS | NOT_PLACES
            or freq(word) < PLACE_MIN_ZIPF
        ):
            continue
        senses = wn.synsets(word, "n")
        if not senses or senses[0].instance_hypernyms() or senses[0].name() in generic:
            continue
        uses = {pos: sum(lem.count() for s in wn.synsets(word, pos) for lem in s.lemmas() if lem.name() == word)
                for pos in "nvar"}  # fmt: skip
        if uses["n"] < max(uses["v"], uses["a"], uses["r"]):
            continue  # "flat", "short", "common": adjectives first
        above = {h.name() for path in senses[0].hypernym_paths() for h in path[:-1]}
        if above & PLACE_SYNSETS:
            out.append(word)
    return out


def imagenet_classes(wn: Any, wnids: Sequence[str]) -> ImageNetClasses:
    """WordNet senses, lemmas, ancestors and settings of the ImageNet classes `wnids`."""
    synsets = [wnid_to_synset(wn, w) for w in wnids]
    return ImageNetClasses(
        wnids=list(wnids),
        synsets=[s.name() for s in synsets],
        lemmas=[[display(lemma.name()).lower() for lemma in s.lemmas()] for s in synsets],
        ancestors=[ancestors(s) for s in synsets],
        settings=[setting_words(wn, s) for s in synsets],
    )


def build_vocabulary(
    wn: Any,
    *,
    size: int = 20000,
    min_zipf: float = 1.0,
    max_tokens: int = 3,
    hypernym_min_zipf: float = 2.5,
    hypernym_hops: int = 8,
    imagenet_wnids: Sequence[str] = (),
    settings: Sequence[Sequence[str]] = (),
    training_tags: Iterable[str] = (),
    freq: Callable[[str], float] = zipf_frequency,
    generic: frozenset[str] = GENERIC_SYNSETS,
    broad_min: int = BROAD_MIN_HYPONYMS,
) -> Vocabulary:
    """The open vocabulary (see the module docstring); `size` counts the `wordnet` words only; `settings`: the
    places of the ImageNet classes (ImageNetClasses.settings), added as `setting` words."""
    entries: dict[str, VocabEntry] = {}
    keys: dict[str, str] = {}  # normalized form -> word: "north_america" and "north america" are one tag

    def add(word: str, synset: Any | None, source: str, zipf: float | None = None) -> None:
        key = normalize(word)
        if key in keys:
            e = entries[keys[key]]
            if source not in e.sources:
                e.sources.append(source)
            return
        keys[key] = word
        chain = hypernym_chain(synset, generic)[:hypernym_hops] if synset is not None else []
        entries[word] = VocabEntry(
            word,
            synset.name() if synset is not None else None,
            freq(key) if zipf is None else zipf,
            [source],
            chain,
        )

    classes = [wnid_to_synset(wn, w) for w in imagenet_wnids]
    for syn in classes:
        for lemma in syn.lemmas():
            add(display(lemma.name()).lower(), syn, "imagenet")
    above = sorted({a for syn in classes for a in ancestors(syn)} - {s.name() for s in classes} - generic)
    for name in above:
        syn = wn.synset(name)
        scored = [
            (freq(display(lemma.name())), display(lemma.name()))
            for lemma in syn.lemmas()
            if lemma.name() == lemma.name().lower() and _OK_WORD.match(display(lemma.name()))
        ]
        if scored:
            z, word = max(scored)
            if z >= hypernym_min_zipf:
                add(word, syn, "hypernym", z)
    for word in dict.fromkeys(w for places in settings for w in places):  # class order, each word once
        add(word, wn.synsets(word, "n")[0], "setting")
    for tag in training_tags:
        senses = wn.synsets(normalize(tag).replace(" ", "_"), "n")
        add(tag, senses[0] if senses else None, "training")
    candidates: dict[str, float] = {}
    for syn in wn.all_synsets("n") if size > 0 else ():
        for lemma in syn.lemmas():
            name = lemma.name()
            word = display(name)
            if name != name.lower() or word in candidates or normalize(word) in keys:
                continue
            if not _OK_WORD.match(word) or len(word.split()) > max_tokens:
                continue
            candidates[word] = freq(word)
    ranked = sorted((w for w, z in candidates.items() if z >= min_zipf), key=lambda w: (-candidates[w], w))
    for word in ranked[:size]:
        add(word, wn.synsets(word.replace(" ", "_"), "n")[0], "wordnet", candidates[word])
    mark_words(wn, entries.values(), broad_min, generic)
    return Vocabulary(list(entries.values()), name_synsets(wn, entries))


def name_synsets(wn: Any, entries: dict[str, VocabEntry]) -> dict[str, str]:
    """For every primary sense and every synset on a chain: its first lemma that is a vocabulary word."""
    lookup = {normalize(w): w for w in entries}
    wanted = {s for e in entries.values() for s in e.path} | {e.synset for e in entries.values() if e.synset}
    names: dict[str, str] = {}
    for name in sorted(wanted):
        for lemma in wn.synset(name).lemmas():
            w = lookup.get(normalize(lemma.name()))
            if w is not None:
                names[name] = w
                break
    return names
