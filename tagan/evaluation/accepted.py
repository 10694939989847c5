"""The accepted-word rule of the real-photo evaluation: which predicted words count as correct for a photo.

A word counts when, normalised (lower case, ``_``/``-`` -> space, WordNet ``morphy`` base form for nouns), it is a
label word or the category word, a lemma of a label synset or of its instance-hypernym, or a lemma of a hypernym
at most ``max_hops`` steps up, except the generic upper-ontology synsets (GENERIC_SYNSETS, closed upward).
``max_hops=1`` without the category word is the specific rule of photo_eval's headline.
"""

from __future__ import annotations

import re
from typing import Any

from tagan.tagging.wordnet import GENERIC_SYNSETS


def normalize(word: str, wn: Any | None = None) -> str:
    """Lower case, ``_``/``-`` -> space, collapse spaces; nouns reduced to their WordNet base form."""
    w = re.sub(r"[\s_\-]+", " ", word.strip().lower())
    if wn is not None and w:
        base = wn.morphy(w.replace(" ", "_"), "n")
        if base:
            w = base.replace("_", " ")
    return w


def accepted_words(
    photo: Any, wn: Any, max_hops: int = 8, generic: frozenset[str] = GENERIC_SYNSETS, category: bool = True
) -> set[str]:
    """The set of normalised words accepted as correct tags for ``photo`` (see module doc)."""
    words = {normalize(photo.label, wn), normalize(photo.label)}
    if photo.category and category:
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
