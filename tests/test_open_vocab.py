"""Open-vocabulary pieces: ConSE, the WordNet posterior, the open CGAN's decoder, FAISS on a big vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from wordnet_fixtures import GENERIC, freq, mini_wordnet, wnid

from tagan.models.open_cgan import OpenCGANConfig, build
from tagan.tagging.index import TagIndex, decode_votes, l2_normalize
from tagan.tagging.open_cgan import ClassPairs, class_targets, head_words, prior_table, related_classes
from tagan.tagging.open_decoder import GeneratorWeights, OpenDecoder, sample_words
from tagan.tagging.open_vocab import WordNetPosterior, conse, conse_vectors, imagenet_names
from tagan.tagging.vocabulary import build_vocabulary, imagenet_classes


def test_conse_is_the_convex_combination_of_the_top_classes() -> None:
    probs = np.array([[0.7, 0.2, 0.1]])
    v = conse_vectors(probs, np.eye(3, dtype=np.float32), top=2)
    assert np.allclose(v, [[0.7 / 0.9, 0.2 / 0.9, 0.0]])
    index = TagIndex(
        ["a", "b", "c", "ab"], np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    )
    assert [w for w, _ in conse(probs, np.eye(3, dtype=np.float32), index, top=2, top_k=2)[0]] == ["a", "ab"]
    assert imagenet_names(probs, ["x", "y", "x"], 2) == [[("x", 0.7), ("y", 0.2)]]  # a repeated name once


def _mini(tmp_path: Path):  # noqa: ANN202
    wn, offsets, _ = mini_wordnet(tmp_path)
    wnids = [wnid(offsets, k) for k in ("golden", "tabby", "hammer")]
    vocab = build_vocabulary(
        wn, size=20, imagenet_wnids=wnids, freq=freq, hypernym_min_zipf=2.5, generic=GENERIC
    )
    return vocab, imagenet_classes(wn, wnids)


def test_wordnet_posterior_spreads_mass_up_the_hierarchy(tmp_path: Path) -> None:
    vocab, classes = _mini(tmp_path)
    model = WordNetPosterior.build(vocab, classes, generic=GENERIC)
    j = {w: i for i, w in enumerate(model.words)}
    probs = np.array([[0.45, 0.45, 0.10]])
    p = probs @ model.m
    assert (
        np.isclose(p[0, j["carnivore"]], 0.9) and np.isclose(p[0, j["dog"]], 0.45) and p[0, j["tool"]] == 0.1
    )
    # r(carnivore) = 1 - log 2 / log 3 + 0.05 = 0.42: beta 0.5 prefers the broad word, beta 2 the specific one
    broad = model.tags(probs, beta=0.5, gamma=0.0, top_k=1)[0][0][0]
    assert broad in {"carnivore", "mammal", "animal"}  # the three cover the same two classes
    assert (
        model.tags(probs, beta=0.5, gamma=1.0, top_k=1)[0][0][0] == "animal"
    )  # the most frequent of the tie
    specific = model.tags(probs, beta=2.0, gamma=0.0, top_k=1)[0][0][0]  # one class's words tie: any of them
    assert specific in {"golden retriever", "retriever", "dog", "canine", "tabby", "cat", "feline"}


def test_class_pairs_target_lemmas_and_named_hypernyms(tmp_path: Path) -> None:
    vocab, classes = _mini(tmp_path)
    head = head_words(vocab, ["computer"])
    hid = {w: i for i, w in enumerate(head)}
    targets = class_targets(classes, vocab, hid, max_hops=3, generic=GENERIC)
    assert {head[i] for i in targets[0][0]} == {"golden retriever", "retriever", "dog", "canine"}
    assert np.isclose(targets[0][1].sum(), 1.0) and prior_table(targets, len(head)).shape == (3, len(head))
    assert 1 in related_classes(classes, max_cover=2)[0]  # retriever and tabby meet at carnivore (2 classes)
    post, words = ClassPairs(targets, related_classes(classes)).sample(64, np.random.default_rng(0))
    assert np.allclose(post.sum(1), 1.0, atol=1e-5) and set(words) <= {i for ids, _ in targets for i in ids}


def test_open_decoder_votes_equal_faiss_votes_on_hard_samples() -> None:
    """A hard sample is a vocabulary vector: the precomputed neighbour table gives exactly decode_votes' votes."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    index = TagIndex(words, rng.normal(size=(40, 8)).astype(np.float32))
    head = ["w3", "w7", "w11", "w20", "w21"]
    cfg = OpenCGANConfig(noise_dim=4, g_noise_hidden=8, g_post_hidden=8, g_feat_hidden=8, feature_dim=6,
                         n_classes=5, tag_dim=8, n_words=len(head), prior_weight=0.0)  # fmt: skip
    g, _ = build(cfg)
    rows = np.array([index.word_index[w] for w in head])
    g.head_vectors.copy_(torch.from_numpy(index.vectors[rows]))
    ckpt = {"config": {"model": cfg.to_dict(), "head": head}, "state_dict": {"generator": g.state_dict()}}
    w_head, b_head = rng.normal(size=(5, 6)).astype(np.float32), np.zeros(5, np.float32)
    dec = OpenDecoder.load(ckpt, index, (w_head, b_head))
    feats = rng.normal(size=(3, 6)).astype(np.float32)
    for nb in (1, 3):
        got = dec.tag(feats, samples=50, neighbors=nb, top_k=6, seed=1)
        post, x, gate = dec.inputs(feats, 2.0)
        ids = sample_words(dec.g, post, x, gate, 50, seed=1)  # (B, S)
        want = decode_votes(index.vectors[rows[ids]], index, neighbors=nb, top_k=6)
        assert [[w for w, _ in t] for t in got] == [[w for w, _ in t] for t in want]
        assert all(np.isclose(a, b) for t, u in zip(got, want) for (_, a), (_, b) in zip(t, u))
    assert all(w in head for t in dec.tag(feats, samples=20, neighbors=1, top_k=5) for w, _ in t)
    cache: dict = {}  # the first image's draws, kept: every call samples exactly as without the cache
    post, x, gate = dec.inputs(feats, 2.0)
    for seed, b in ((1, 1), (1, 3), (2, 1), (1, 1), (2, 3), (1, 2)):
        want = sample_words(dec.g, post[:b], x[:b], gate[:b], 50, seed=seed)
        assert np.array_equal(
            sample_words(dec.g, post[:b], x[:b], gate[:b], 50, seed=seed, cache=cache), want
        )
    assert set(cache) == {(1, 50), (2, 50)}


def test_numpy_generator_computes_the_torch_generators_logits() -> None:
    """The CLI serves G in numpy (no torch import): its logits are the torch Generator's, feature gate on and off."""
    torch.manual_seed(0)
    cfg = OpenCGANConfig(noise_dim=4, g_noise_hidden=8, g_post_hidden=8, g_feat_hidden=8, feature_dim=6,
                         n_classes=5, tag_dim=8, n_words=7, prior_weight=0.5)  # fmt: skip
    g, _ = build(cfg)
    g.eval()
    g.prior.copy_(torch.softmax(torch.randn(5, 7), 1))
    g.norm.fit(torch.randn(20, 6) * 3 + 1)
    torch.nn.init.normal_(g.missing)
    post = torch.softmax(torch.randn(4, 5), 1)
    x, gate, z = torch.randn(4, 6), torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.randn(3, 4)
    np_g = GeneratorWeights.from_checkpoint(
        {"config": {"model": cfg.to_dict()}, "state_dict": {"generator": g.state_dict()}}
    )
    with torch.no_grad():
        want_cond, want_noise = g.cond_logits(post, x, gate).numpy(), g.noise_logits(z).numpy()
    np.testing.assert_allclose(
        np_g.cond_logits(post.numpy(), x.numpy(), gate.numpy()), want_cond, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(np_g.noise_logits(z.numpy()), want_noise, rtol=1e-5, atol=1e-6)
    assert not np.allclose(want_cond[0], want_cond[1])  # the gate and the inputs matter


def test_faiss_round_trip_on_a_big_vocabulary(tmp_path: Path) -> None:
    """52k words > exact_threshold: an HNSW index that saves, loads and finds each word as its own neighbour."""
    rng = np.random.default_rng(0)
    n, d = 52_000, 16
    words = [f"word{i}" for i in range(n)]
    vectors = l2_normalize(rng.normal(size=(n, d)))
    index = TagIndex(words, vectors, exact_threshold=50_000, hnsw_m=16)
    assert not index.exact
    index.save(tmp_path / "open")
    again = TagIndex.load(tmp_path / "open")
    assert again.words == words and not again.exact and np.array_equal(again.vectors, index.vectors)
    q = vectors[rng.choice(n, 500, replace=False)]
    s1, i1 = index.search(q, 5)
    s2, i2 = again.search(q, 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    exact = np.argsort(-(q @ vectors.T), axis=1)[:, 0]
    assert (i1[:, 0] == exact).mean() >= 0.99


def test_open_cgan_task_trains_with_the_shared_trainer(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Mixed batches (image pairs with gated features + class pairs) through tagan.gan.fit; deterministic batches."""
    from tagan import gan
    from tagan.tagging.open_cgan import OpenCGANTask, OpenTrainConfig

    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    rng = np.random.default_rng(0)
    n_cls, n_words, f = 4, 6, 5
    targets = [(np.array([c, 4]), np.array([0.7, 0.3])) for c in range(n_cls)]
    pairs = ClassPairs(targets, [np.array([(c + 1) % n_cls]) for c in range(n_cls)])
    cfg = OpenCGANConfig(noise_dim=4, g_noise_hidden=8, g_post_hidden=8, g_feat_hidden=8, d_hidden=8,
                         feature_dim=f, n_classes=n_cls, tag_dim=3, n_words=n_words)  # fmt: skip
    g, d = build(cfg)
    head = torch.from_numpy(l2_normalize(rng.normal(size=(n_words, 3))))
    g.head_vectors.copy_(head)
    g.prior.copy_(torch.from_numpy(prior_table(targets, n_words)))
    train = OpenTrainConfig(loss="hinge", batch_size=8, steps=12, log_every=4, checkpoint_every=0)
    feats = torch.from_numpy(rng.normal(size=(10, f)).astype(np.float32))
    post = torch.softmax(torch.from_numpy(rng.normal(size=(10, n_cls)).astype(np.float32)), 1)
    task = OpenCGANTask(feats, post, np.arange(10), np.full(10, 5), pairs, head, cfg.noise_dim, train)
    b1, b2 = task.batch(torch.arange(8)), task.batch(torch.arange(8))
    assert torch.equal(b1.cond, b2.cond) and torch.equal(
        b1.target, b2.target
    )  # resumable: same idx, same batch
    assert b1.cond.shape == (8, n_cls + f + 1) and (b1.cond[4:, -1] == 0).all()  # class pairs: no features
    fitted = gan.fit(task, g, d, train, gan.OptimConfig(lr=1e-3), name="open_test", config_dict={}, seed=0)
    assert len(fitted.rows) == 3 and all(np.isfinite(r["d_loss"]) for r in fitted.rows)


def test_class_pairs_give_a_share_to_the_places_a_class_is_seen_in(tmp_path: Path) -> None:
    vocab, classes = _mini(tmp_path)
    classes.settings = [["tower", "golden retriever"], [], ["tower"]]  # a place, and the class's own word
    head = [*head_words(vocab, []), "tower"]
    hid = {w: i for i, w in enumerate(head)}
    plain = class_targets(classes, vocab, hid, max_hops=3, generic=GENERIC)
    mixed = class_targets(classes, vocab, hid, max_hops=3, setting=0.3, generic=GENERIC)
    assert hid["tower"] not in plain[0][0]
    ids, p = mixed[0]
    assert np.isclose(p[list(ids).index(hid["tower"])], 0.3 * p[: len(plain[0][0])].max()) and np.isclose(
        p.sum(), 1
    )
    assert list(ids).count(hid["golden retriever"]) == 1  # an own word stays an own word
    assert np.array_equal(mixed[1][0], plain[1][0])  # no setting: the class's targets as before
