"""Offline WordNet 3.0 through nltk's reader (Debian `wordnet-base` files), hypernym chains, ImageNet-1k synsets.

nltk's `WordNetCorpusReader` wants, in one folder, the Princeton database files (`index.*`, `data.*`,
`*.exc`, optionally `index.sense` / `cntlist.rev`) plus a `lexnames` file that Debian does not ship
(the fixed list of the 45 lexicographer files, lexnames(5WN)); it is written here. nltk 3.10 also
refuses folders outside `nltk.data.path` and does not follow symlinks, so the files are COPIED to
`<cache>/nltk_data/corpora/wordnet` and `<cache>/nltk_data` joins `nltk.data.path`.
nltk orders `hypernym_paths()` by a set iteration that depends on PYTHONHASHSEED: every choice
among paths here breaks ties by synset name, so results are the same in every process.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

from tagan.errors import UserError

DEBIAN_WORDNET = Path("/usr/share/wordnet")

#: The 45 lexicographer file names of WordNet 3.0, in file-number order (lexnames(5WN)).
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
REQUIRED = tuple(f"{k}.{p}" for k in ("index", "data") for p in ("noun", "verb", "adj", "adv")) + tuple(
    f"{p}.exc" for p in ("noun", "verb", "adj", "adv")
)
OPTIONAL = ("index.sense", "cntlist.rev")

#: Upper-ontology synsets whose lemmas are too generic to be tags ("entity", "object", "artifact", ...);
#: closed upward (every synset above one of them is in the set too).
GENERIC_SYNSETS: frozenset[str] = frozenset(
    {
        "entity.n.01", "physical_entity.n.01", "abstraction.n.06", "object.n.01", "whole.n.02",
        "living_thing.n.01", "organism.n.01", "artifact.n.01", "instrumentality.n.03",
        "structure.n.01", "matter.n.03", "causal_agent.n.01", "thing.n.12", "part.n.02",
        "group.n.01", "commodity.n.01", "covering.n.02", "substance.n.01", "substance.n.07",
        "solid.n.01", "psychological_feature.n.01", "attribute.n.02", "relation.n.01",
        "measure.n.02", "location.n.01", "region.n.03", "geological_formation.n.01",
        "natural_object.n.01", "part.n.01", "material.n.01", "way.n.06", "area.n.05",
        "container.n.01", "device.n.01", "equipment.n.01", "implement.n.01", "system.n.01",
        "facility.n.01", "creation.n.02", "product.n.02", "body.n.01", "point.n.02",
    }
)  # fmt: skip


def lexnames_text() -> str:
    """The `lexnames` file nltk reads: number, name, part-of-speech number per line."""
    return "".join(f"{i:02d}\t{n}\t{_POS_NUMBER[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES))


def prepare_wordnet(cache_dir: Path, source: Path = DEBIAN_WORDNET) -> Path:
    """Copy the WordNet files of `source` to `cache_dir/nltk_data/corpora/wordnet` (+ lexnames); the folder.

    Missing part-of-speech files are created empty, so a miniature noun-only WordNet reads too.
    """
    source = Path(source)
    if not (source / "data.noun").is_file():
        raise UserError(
            f"no WordNet database in {source}; install it with `sudo apt-get install wordnet-base` "
            "(scripts/system_packages.sh) or set vocabulary.wordnet_dir"
        )
    root = Path(cache_dir) / "nltk_data" / "corpora" / "wordnet"
    root.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED + OPTIONAL:
        src, dst = source / name, root / name
        if src.is_file():
            if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                shutil.copyfile(src, dst)
        elif not dst.exists():
            dst.write_text("")  # nltk's reader opens every file of its list
    (root / "lexnames").write_text(lexnames_text())
    return root


def load_wordnet(cache_dir: Path, source: Path = DEBIAN_WORDNET) -> Any:
    """An nltk `WordNetCorpusReader` over a copy of `source` in `cache_dir` (3-4 s for the full WordNet)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = prepare_wordnet(cache_dir, source)
    data_dir = str(root.parent.parent)
    if data_dir not in nltk.data.path:
        nltk.data.path.insert(0, data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available" (no OMW data)
        return WordNetCorpusReader(str(root), None)


def display(lemma: str) -> str:
    """A WordNet lemma name as a tag: underscores become spaces ("golden_retriever" -> "golden retriever")."""
    return lemma.replace("_", " ")


def hypernym_chain(synset: Any, generic: frozenset[str] = GENERIC_SYNSETS) -> list[str]:
    """Synset names above `synset` on its longest hypernym path, nearest first, generic ones removed.

    Ties between equally long paths break on the synset names (nltk's path order depends on the hash seed).
    """
    paths = synset.hypernym_paths()
    if not paths:
        return []
    path = max(paths, key=lambda p: (len(p), [s.name() for s in p]))  # root ... synset
    return [s.name() for s in reversed(path[:-1]) if s.name() not in generic]


def ancestors(synset: Any, max_hops: int | None = None) -> dict[str, int]:
    """Every synset above `synset` (hypernyms and instance hypernyms, all paths) -> its fewest hops (self: 0)."""
    out = {synset.name(): 0}
    frontier = [synset]
    hops = 0
    while frontier and (max_hops is None or hops < max_hops):
        hops += 1
        nxt = []
        for s in frontier:
            for h in sorted(s.hypernyms() + s.instance_hypernyms(), key=lambda x: x.name()):
                if h.name() not in out:
                    out[h.name()] = hops
                    nxt.append(h)
        frontier = nxt
    return out


def timm_info_dir() -> Path:
    """Folder of the label files inside the PyPI `timm` wheel, found without importing timm (and torch)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "timm is not installed (pip install -r requirements.txt); only its label files are read"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


def imagenet1k_wnids(info_dir: Path | None = None) -> list[str]:
    """The 1000 ImageNet-1k wnids in class-index order (the order of every ImageNet classifier's outputs)."""
    wnids = (Path(info_dir or timm_info_dir()) / "imagenet_synsets.txt").read_text().split()
    if len(wnids) != 1000:
        raise UserError(f"expected 1000 ImageNet-1k synsets in timm's imagenet_synsets.txt, got {len(wnids)}")
    return wnids


def wnid_to_synset(wn: Any, wnid: str) -> Any:
    """The WordNet noun synset of an ImageNet wnid ("n02099601": offset 2099601)."""
    return wn.synset_from_pos_and_offset("n", int(wnid[1:]))
