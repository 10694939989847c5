"""The tagging-method registry: every registered kind round-trips fit -> save -> load -> tag on a tiny bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from wordnet_fixtures import GENERIC, freq, mini_wordnet, wnid

from tagan.errors import UserError
from tagan.files import write_json
from tagan.models import open_cgan, tag_cgan
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle, fresh_bundle_dir
from tagan.tagging.features import FeatureConfig
from tagan.tagging.index import TagIndex, read_tag_data
from tagan.tagging.vocabulary import build_vocabulary, imagenet_classes
from tests.tag_fixtures import TINY_TAG_CGAN, make_tag_data

DIM, TAG_DIM = 16, 8  # feature and word-vector sizes of the fixture
MLP = dict(hidden=8, epochs=2, lr=1e-2, weight_decay=0.0, dropout=0.0)


def tiny_resources(tmp_path: Path) -> tuple[Any, Path, dict[str, Path]]:
    """Tag data, a bundle folder with every shared part (index, ImageNet head over 3 classes, open
    vocabulary from the miniature WordNet), and the checkpoints of an untrained tag CGAN and open CGAN."""
    rng = np.random.default_rng(0)
    paths = make_tag_data(tmp_path / "data", dim=DIM)
    data = read_tag_data(paths["items"], paths["vocab"], paths["features"])
    index = TagIndex(data.vocab, rng.normal(size=(len(data.vocab), TAG_DIM)))
    wn, offsets, _ = mini_wordnet(tmp_path)
    wnids = [wnid(offsets, k) for k in ("golden", "tabby", "hammer")]
    vocab = build_vocabulary(
        wn, size=20, imagenet_wnids=wnids, freq=freq, hypernym_min_zipf=2.5, generic=GENERIC
    )
    vocab.save(tmp_path / "vocabulary")
    write_json(tmp_path / "vocabulary" / "imagenet.json", imagenet_classes(wn, wnids).to_json())
    open_index = TagIndex(vocab.words, rng.normal(size=(len(vocab), TAG_DIM)))
    open_index.save(tmp_path / "open")
    head = rng.normal(size=(3, DIM)).astype(np.float32), np.zeros(3, np.float32)
    bundle = fresh_bundle_dir(
        tmp_path / "bundle",
        index,
        head=head,
        open_dir=tmp_path / "open",
        vocabulary_dir=tmp_path / "vocabulary",
    )
    sizes = tag_cgan.DataSizes(feature_dim=DIM, tag_dim=TAG_DIM, vocab_size=len(index))
    g, d = tag_cgan.build(tag_cgan.TagCGANConfig(**TINY_TAG_CGAN), sizes)
    config = {"model": g.cfg.to_dict(), "sizes": sizes.to_dict(), "vocab": index.words}
    torch.save({"config": config, "state_dict": {"generator": g.state_dict(), "discriminator": d.state_dict()}},
               tmp_path / "cgan.pt")  # fmt: skip
    words = vocab.words[:5]
    ocfg = open_cgan.OpenCGANConfig(noise_dim=4, g_noise_hidden=8, g_post_hidden=8, g_feat_hidden=8,
                                    feature_dim=DIM, n_classes=3, tag_dim=TAG_DIM, n_words=len(words))  # fmt: skip
    og, _ = open_cgan.build(ocfg)
    og.head_vectors.copy_(torch.from_numpy(open_index.vectors[[open_index.word_index[w] for w in words]]))
    torch.save({"config": {"model": ocfg.to_dict(), "head": words}, "state_dict": {"generator": og.state_dict()}},
               tmp_path / "open.pt")  # fmt: skip
    return data, bundle, {"cgan": tmp_path / "cgan.pt", "open": tmp_path / "open.pt"}


def fit_options(checkpoints: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Fit options of every registered kind (a new kind adds its line here)."""
    return {
        "prior": {},
        "knn": {"k_grid": [1, 3]},
        "classifier": MLP,
        "regressor": {**MLP, "neighbors": 2},
        "zeroshot": {"fallback": "glove", "tags_per_class": 2, "top": 2},
        "cgan": {"checkpoint": checkpoints["cgan"], "samples": 6, "neighbors_grid": [1, 2], "top_k": 5},
        "imagenet_names": {},
        "conse": {"top": 2},
        "wordnet": {"beta": 0.5, "gamma": 0.0},
        "cgan_open": {"checkpoint": checkpoints["open"], "samples": 8, "neighbors": 2, "feature_gate": 0.5},
    }


def test_every_registered_method_round_trips_through_a_bundle(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    data, bundle_dir, checkpoints = tiny_resources(tmp_path)
    # zeroshot's class -> tag map from the 3 fixture classes (the real one embeds ImageNet's 1000 names)
    monkeypatch.setattr(
        "tagan.tagging.baselines.imagenet_class_to_tag",  # imported by ZeroShot.fit
        lambda words, fallback, per_class: np.eye(3, len(words), dtype=np.float32),
    )
    options = fit_options(checkpoints)
    assert set(options) == set(methods.list_methods()), "a registered kind has no round-trip test"
    ctx = methods.FitContext(data, data.rows("train"), data.rows("val"), methods.Resources(bundle_dir))
    test = data.features[data.rows("test")]
    fitted = {kind: methods.get_method(kind).fit(ctx, **opts) for kind, opts in options.items()}
    entries = {f"my_{kind}": methods.save_method(bundle_dir, f"my_{kind}", m) for kind, m in fitted.items()}
    Bundle("test", FeatureConfig(), DIM, len(data.vocab), TAG_DIM, entries, {"cgan": "my_cgan_open"}).save(
        bundle_dir
    )
    assert methods.available(bundle_dir) == ["cgan", *sorted(entries)]  # info.json keeps keys sorted
    assert entries["my_cgan"].settings["neighbors"] in (1, 2) and entries["my_wordnet"].settings == {
        "beta": 0.5,
        "gamma": 0.0,
    }
    for kind, method in fitted.items():
        loaded = methods.load_method(bundle_dir, f"my_{kind}")
        assert type(loaded) is type(method) and loaded.settings == method.settings, kind
        want, got = method.tag(test, top_k=5, seed=3), loaded.tag(test, top_k=5, seed=3)
        assert [[w for w, _ in t] for t in got] == [[w for w, _ in t] for t in want], kind
        assert np.allclose([s for t in got for _, s in t], [s for t in want for _, s in t]), kind
        assert all(0 < len(t) <= 5 for t in got), kind
        allowed = {loaded.words[0], loaded.words[1]}
        if kind != "wordnet":  # wordnet's words are its synsets' names, the rest decode over their index
            assert all(w in allowed for t in loaded.tag(test, top_k=5, allowed=allowed) for w, _ in t), kind
    assert methods.load_method(bundle_dir, "cgan").kind == "cgan_open"  # an alias resolves


def test_registry_lookups_and_errors(tmp_path: Path) -> None:
    assert {"prior", "knn", "cgan", "cgan_open", "wordnet"} <= set(methods.list_methods())
    assert methods.get_method("knn").kind == "knn"
    with pytest.raises(UserError, match="unknown tagging method kind"):
        methods.get_method("clip")
    with pytest.raises(ValueError, match="registered twice"):
        methods.register_method("knn")(type("Again", (methods.ScoreMethod,), {}))
    bundle = fresh_bundle_dir(tmp_path / "b", TagIndex(["a", "b"], np.eye(2)))
    prior = methods.get_method("prior")
    entry = methods.save_method(
        bundle, "prior", prior(prior.Settings(), methods.Resources(bundle), np.array([2, 1]))
    )
    entry.settings = {"bogus": 1}
    Bundle("t", FeatureConfig(), 2, 2, 2, {"prior": entry}).save(bundle)
    with pytest.raises(UserError, match="malformed"):
        methods.load_method(bundle, "prior")
    with pytest.raises(UserError, match="choose one of"):
        methods.load_method(bundle, "knn")
