"""The open vocabulary on a miniature WordNet read through nltk exactly like Debian's WordNet 3.0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wordnet_fixtures import GENERIC, freq, mini_wordnet, wnid

from pipeline.vocabulary import Params, run
from tagan.config import Runtime
from tagan.tagging.vocabulary import (
    VocabEntry,
    Vocabulary,
    build_vocabulary,
    imagenet_classes,
    is_taxon,
    mark_words,
    normalize,
    setting_words,
)
from tagan.tagging.wordnet import DEBIAN_WORDNET, ancestors, hypernym_chain, lexnames_text, load_wordnet


def test_mini_wordnet_reads_through_nltk(tmp_path: Path) -> None:
    wn, offsets, _ = mini_wordnet(tmp_path)
    dog = wn.synsets("dog", "n")
    assert [s.offset() for s in dog] == [offsets["dog"], offsets["dog2"]]
    assert dog[0].name() == "dog.n.01" and dog[0].lexname() == "noun.animal"
    assert wn.synset("eiffel_tower.n.01").instance_hypernyms()[0].name() == "tower.n.01"
    assert wn.synset_from_pos_and_offset("n", offsets["cat"]).name() == "cat.n.01"
    assert wn.morphy("dogs", "n") == "dog"  # nltk's detachment rules work without exception lists
    assert lexnames_text().splitlines()[5] == "05\tnoun.animal\t1"


def test_hypernym_paths(tmp_path: Path) -> None:
    wn, _, _ = mini_wordnet(tmp_path)
    golden = wn.synset("golden_retriever.n.01")
    assert hypernym_chain(golden, GENERIC) == [
        "retriever.n.01", "dog.n.01", "canine.n.01", "carnivore.n.01", "mammal.n.01", "animal.n.01",
    ]  # fmt: skip
    up = ancestors(golden)
    assert up["golden_retriever.n.01"] == 0 and up["dog.n.01"] == 2 and up["entity.n.01"] == 12
    assert set(ancestors(golden, max_hops=2)) == {"golden_retriever.n.01", "retriever.n.01", "dog.n.01"}
    eiffel = ancestors(wn.synset("eiffel_tower.n.01"))
    assert eiffel["tower.n.01"] == 1  # instance hypernyms count as hypernyms


def test_build_vocabulary(tmp_path: Path) -> None:
    wn, offsets, _ = mini_wordnet(tmp_path)
    vocab = build_vocabulary(
        wn, size=6, imagenet_wnids=[wnid(offsets, "golden"), wnid(offsets, "hammer")],
        training_tags=["computer", "dog", "north_america"], freq=freq, hypernym_min_zipf=3.0, generic=GENERIC,
    )  # fmt: skip
    words = vocab.words
    assert words[:2] == ["golden retriever", "hammer"] and vocab.entries[0].sources == ["imagenet"]
    # broader words above the classes, when frequent enough (retriever: 3.0 >= 3.0; mammal 3.9; tool 4.6)
    assert {"retriever", "dog", "canine", "carnivore", "mammal", "animal", "tool"} <= set(words)
    assert vocab.entries[vocab.index["dog"]].sources == ["hypernym", "training"]
    assert vocab.entries[vocab.index["computer"]].synset is None  # a training tag WordNet does not know
    assert "north_america" in words and "north america" not in words  # training tags stay verbatim
    assert "eiffel tower" not in words and "Eiffel Tower" not in words  # proper nouns never
    assert "domestic dog" not in words  # rarer than the `size` most frequent nouns
    assert "object" not in words or "object" in vocab.synset_words.values()
    assert vocab.entries[vocab.index["dog"]].synset == "dog.n.01"  # the most frequent sense
    assert vocab.broader("golden retriever", 3) == ["retriever", "dog", "canine"]
    assert vocab.broader("golden retriever")[-1] == "animal" and vocab.broader("no such word") == []
    vocab.save(tmp_path / "v")
    again = Vocabulary.load(tmp_path / "v")
    assert again.words == words and again.broader("golden retriever") == vocab.broader("golden retriever")


def test_hypernym_hops_limit_the_chain(tmp_path: Path) -> None:
    wn, offsets, _ = mini_wordnet(tmp_path)
    vocab = build_vocabulary(
        wn, size=0, imagenet_wnids=[wnid(offsets, "golden")], freq=freq, hypernym_hops=2, generic=GENERIC
    )
    assert vocab.entries[0].path == ["retriever.n.01", "dog.n.01"]
    assert vocab.broader("golden retriever") == ["retriever", "dog"]


def test_imagenet_classes(tmp_path: Path) -> None:
    wn, offsets, _ = mini_wordnet(tmp_path)
    classes = imagenet_classes(wn, [wnid(offsets, "tabby"), wnid(offsets, "hammer")])
    assert classes.names == ["tabby", "hammer"] and classes.lemmas[0] == ["tabby", "tabby cat"]
    assert classes.ancestors[0]["feline.n.01"] == 2 and "tool.n.01" in classes.ancestors[1]
    assert json.loads(json.dumps(classes.to_json())) == classes.to_json()


def test_stage_run(tmp_path: Path) -> None:
    _, _, src = mini_wordnet(tmp_path)
    tags = tmp_path / "vocab.json"
    tags.write_text(json.dumps({"tags": ["dog", "computer"], "train_counts": {"dog": 3, "computer": 2}}))
    cfg = Params(size=5, min_zipf=0.0, imagenet=False, wordnet_dir=src, cache_dir=tmp_path / "nltk")
    metrics = run(cfg, Runtime(), tags, tmp_path / "out")
    vocab = Vocabulary.load(tmp_path / "out")
    assert (
        metrics["size"] == len(vocab) == 7
        and metrics["words_training"] == 2
        and metrics["words_wordnet"] == 5
    )
    assert vocab.words[:2] == ["dog", "computer"] and not (tmp_path / "out" / "imagenet.json").exists()
    assert normalize("North_America") == "north america"


def test_words_people_use_jargon_broad_and_short_paths(tmp_path: Path) -> None:
    wn, offsets, _ = mini_wordnet(tmp_path)
    vocab = build_vocabulary(
        wn, size=20, imagenet_wnids=[wnid(offsets, "golden"), wnid(offsets, "tabby")], freq=freq,
        hypernym_min_zipf=2.9, generic=GENERIC, broad_min=3,
    )  # fmt: skip
    flags = {e.word: (e.broad, e.jargon) for e in vocab.entries}
    assert flags["animal"] == (True, False)  # a broad word people use (Zipf 5.3)
    assert flags["mammal"] == (True, False)  # Zipf 3.9 >= 3.5
    assert flags["carnivore"] == (True, True) and flags["canine"] == (True, True)  # broad and rare: jargon
    assert flags["golden retriever"] == (False, False)  # a phrase, but not a category
    assert flags["object"][1] and flags["structure"][1]  # the upper ontology
    assert "carnivore" in vocab.jargon and "animal" not in vocab.jargon
    # the written hierarchy: a common top word, the nearest word, the word; never jargon, at most 3 long
    assert vocab.path("golden retriever") == ["animal", "retriever", "golden retriever"]
    assert vocab.path("tabby") == ["animal", "cat", "tabby"]  # mammal is broader than cat, animal more common
    assert vocab.path("golden retriever", levels=2) == ["animal", "golden retriever"]
    assert vocab.path("animal") == [] and vocab.path("no such word") == []
    vocab.save(tmp_path / "v")
    assert Vocabulary.load(tmp_path / "v").jargon == vocab.jargon


@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").exists(), reason="Debian wordnet-base missing")
def test_the_places_a_class_gloss_names_are_its_setting(tmp_path: Path) -> None:
    wn = load_wordnet(tmp_path / "wordnet")
    assert setting_words(wn, wn.synset("seashore.n.01")) == [
        "shore",
        "sea",
        "ocean",
    ]  # "the shore of a sea or ocean"
    assert setting_words(wn, wn.synset("lakeside.n.01")) == ["shore", "lake"]
    assert setting_words(wn, wn.synset("alp.n.01")) == ["mountain"]
    assert setting_words(wn, wn.synset("barbell.n.01")) == []  # "a bar to which heavy discs are attached"
    assert setting_words(wn, wn.synset("chihuahua.n.03")) == []  # "tiny short-haired dog": no adjectives
    assert setting_words(wn, wn.synset("piggy_bank.n.01")) == []  # "a child's coin bank"


@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").exists(), reason="Debian wordnet-base missing")
def test_scientific_names_are_jargon(tmp_path: Path) -> None:
    wn = load_wordnet(tmp_path / "wordnet")
    assert is_taxon(wn, "chamaeleo chamaeleon") and is_taxon(wn, "loxodonta africana")
    assert not is_taxon(wn, "african chameleon") and not is_taxon(wn, "aloe vera")
    entries = [
        VocabEntry("chamaeleo chamaeleon", "african_chameleon.n.01", 0.0),
        VocabEntry("african chameleon", "african_chameleon.n.01", 2.0),
    ]
    mark_words(wn, entries)
    assert [e.jargon for e in entries] == [True, False]


def test_places_are_not_capped_like_broad_categories() -> None:
    vocab = Vocabulary(
        [VocabEntry("animal", "animal.n.01", 5.3, ["hypernym"], broad=True),
         VocabEntry("lake", "lake.n.01", 4.9, ["setting"], broad=True),
         VocabEntry("tabby", "tabby.n.01", 2.8, ["imagenet"])]
    )  # fmt: skip
    assert vocab.capped == {"animal"}  # "animal, dog, mammal" stack up; "lake" names the scene
