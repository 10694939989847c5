"""A miniature noun-only WordNet written in the Princeton database format (read by nltk like the real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagan.tagging.wordnet import load_wordnet

# key, lemmas, hypernyms / instance_of, lexicographer file (3 Tops, 5 animal, 6 artifact, 13 food)
SYNSETS: list[dict[str, Any]] = [
    {"key": "entity", "words": ["entity"], "gloss": "that which exists"},
    {"key": "physical", "words": ["physical_entity"], "hypernyms": ["entity"]},
    {"key": "object", "words": ["object", "physical_object"], "hypernyms": ["physical"]},
    {"key": "whole", "words": ["whole", "unit"], "hypernyms": ["object"]},
    {"key": "living", "words": ["living_thing"], "hypernyms": ["whole"]},
    {"key": "organism", "words": ["organism", "being"], "hypernyms": ["living"]},
    {"key": "animal", "words": ["animal", "beast"], "hypernyms": ["organism"], "lexfile": 5},
    {"key": "mammal", "words": ["mammal"], "hypernyms": ["animal"], "lexfile": 5},
    {"key": "carnivore", "words": ["carnivore"], "hypernyms": ["mammal"], "lexfile": 5},
    {"key": "canine", "words": ["canine", "canid"], "hypernyms": ["carnivore"], "lexfile": 5},
    {"key": "dog", "words": ["dog", "domestic_dog"], "hypernyms": ["canine"], "lexfile": 5},
    {"key": "retriever", "words": ["retriever"], "hypernyms": ["dog"], "lexfile": 5},
    {"key": "golden", "words": ["golden_retriever"], "hypernyms": ["retriever"], "lexfile": 5},
    {"key": "feline", "words": ["feline", "felid"], "hypernyms": ["carnivore"], "lexfile": 5},
    {"key": "cat", "words": ["cat", "true_cat"], "hypernyms": ["feline"], "lexfile": 5},
    {"key": "tabby", "words": ["tabby", "tabby_cat"], "hypernyms": ["cat"], "lexfile": 5},
    {"key": "artifact", "words": ["artifact", "artefact"], "hypernyms": ["whole"], "lexfile": 6},
    {"key": "structure", "words": ["structure", "construction"], "hypernyms": ["artifact"], "lexfile": 6},
    {"key": "tower", "words": ["tower"], "hypernyms": ["structure"], "lexfile": 6},
    {"key": "eiffel", "words": ["Eiffel_Tower"], "instance_of": ["tower"], "lexfile": 6},
    {"key": "dog2", "words": ["dog", "frank", "hotdog"], "hypernyms": ["artifact"], "lexfile": 13},
    {"key": "tool", "words": ["tool"], "hypernyms": ["artifact"], "lexfile": 6},
    {"key": "hammer", "words": ["hammer"], "hypernyms": ["tool"], "lexfile": 6},
]
# the generic synsets of this miniature WordNet (its sense numbers differ from WordNet 3.0's)
GENERIC = frozenset(
    {"entity.n.01", "physical_entity.n.01", "object.n.01", "whole.n.01", "living_thing.n.01",
     "organism.n.01", "artifact.n.01", "structure.n.01"}
)  # fmt: skip
FREQ = {"dog": 5.1, "cat": 5.0, "animal": 5.3, "tower": 4.5, "mammal": 3.9, "retriever": 3.0,
        "golden retriever": 3.0, "canine": 3.2, "carnivore": 3.1, "feline": 3.0, "frank": 4.6,
        "beast": 4.0, "hotdog": 3.5, "domestic dog": 1.5, "object": 5.0, "structure": 4.8, "tool": 4.6,
        "hammer": 4.0, "tabby": 2.8}  # fmt: skip


def freq(word: str) -> float:
    """Zipf frequencies of the miniature WordNet's words (0.5 for the rest)."""
    return FREQ.get(word, 0.5)


def write_wordnet_files(root: Path, synsets: list[dict[str, Any]]) -> dict[str, int]:
    """Write data.noun + index.noun (wndb(5WN) format, correct byte offsets); returns {key: offset}."""
    root.mkdir(parents=True, exist_ok=True)
    header = "  1 miniature WordNet written by tagan tests (format of wndb(5WN))\n"
    children: dict[str, list[tuple[str, str]]] = {s["key"]: [] for s in synsets}
    for s in synsets:
        for h in s.get("hypernyms", []):
            children[h].append(("~", s["key"]))
        for h in s.get("instance_of", []):
            children[h].append(("~i", s["key"]))

    def pointers(s: dict[str, Any]) -> list[tuple[str, str]]:
        return (
            [("@", h) for h in s.get("hypernyms", [])]
            + [("@i", h) for h in s.get("instance_of", [])]
            + children[s["key"]]
        )

    def line(s: dict[str, Any], offsets: dict[str, int]) -> str:
        words = " ".join(f"{w} 0" for w in s["words"])
        ptrs = "".join(f" {sym} {offsets.get(k, 0):08d} n 0000" for sym, k in pointers(s))
        return (
            f"{offsets.get(s['key'], 0):08d} {s.get('lexfile', 3):02d} n {len(s['words']):02x} {words} "
            f"{len(pointers(s)):03d}{ptrs} | {s.get('gloss', '')}  \n"
        )

    offsets: dict[str, int] = {}
    pos = len(header.encode())
    for s in synsets:  # pointer fields have a fixed width: line lengths do not depend on the offsets
        offsets[s["key"]] = pos
        pos += len(line(s, {}).encode())
    with open(root / "data.noun", "w", newline="\n") as fh:
        fh.write(header + "".join(line(s, offsets) for s in synsets))
    lemmas: dict[str, list[dict[str, Any]]] = {}
    for s in synsets:
        for w in s["words"]:
            lemmas.setdefault(w.lower(), []).append(s)
    with open(root / "index.noun", "w", newline="\n") as fh:
        fh.write(header)
        for lemma in sorted(lemmas):
            ss = lemmas[lemma]
            syms = sorted({sym for s in ss for sym, _ in pointers(s)})
            offs = " ".join(f"{offsets[s['key']]:08d}" for s in ss)
            fh.write(f"{lemma} n {len(ss)} {len(syms)} {' '.join(syms)} {len(ss)} 0 {offs}  \n")
    return offsets


def mini_wordnet(tmp_path: Path) -> tuple[Any, dict[str, int], Path]:
    """(nltk reader over the miniature WordNet, {key: offset}, its source folder)."""
    src = tmp_path / "wn_src"
    offsets = write_wordnet_files(src, SYNSETS)
    return load_wordnet(tmp_path / "cache", src), offsets, src


def wnid(offsets: dict[str, int], key: str) -> str:
    """The ImageNet-style id of a miniature synset ("n" + 8-digit offset)."""
    return f"n{offsets[key]:08d}"
