"""TagIndex (exact and approximate), the paper's vote decoding, data reading and score top-k."""

from __future__ import annotations

import numpy as np
import pytest

from tagan.errors import UserError
from tagan.tagging.index import (
    TagIndex,
    decode_votes,
    knn_scores,
    read_tag_data,
    top_from_scores,
    zeroshot_scores,
)
from tests.tag_fixtures import make_tag_data


def small_index(v: int = 30, d: int = 12, seed: int = 0, **kw) -> TagIndex:
    rng = np.random.default_rng(seed)
    return TagIndex([f"w{i}" for i in range(v)], rng.normal(size=(v, d)), **kw)


def test_vocabulary_word_decodes_to_itself():
    index = small_index()
    tags = decode_votes(index.vectors[:, None, :], index, neighbors=1, top_k=1)  # (V, S=1, D)
    assert [row[0][0] for row in tags] == index.words
    assert all(row[0][1] == 1.0 for row in tags)


def test_vote_logic_on_hand_made_case():
    index = TagIndex(["a", "b", "c"], np.eye(3))
    near_a, near_b = [1, 0.1, 0], [0.1, 1, 0.2]
    generated = np.array([[near_a, near_a, near_a, near_b]], dtype=np.float32)  # (1, 4, 3)
    assert decode_votes(generated, index, neighbors=1, top_k=3) == [[("a", 0.75), ("b", 0.25)]]
    # two neighbours each: near_a votes a, b; near_b votes b, c -> b 4, a 3, c 1 of 8 votes
    two = decode_votes(generated, index, neighbors=2, top_k=3)[0]
    assert two == [("b", 0.5), ("a", 0.375), ("c", 0.125)]
    assert decode_votes(generated, index, neighbors=2, top_k=2)[0] == two[:2]
    assert decode_votes(generated, index, neighbors=1, top_k=3, allowed={"b", "c"})[0][0][0] == "b"


def test_weighted_votes_use_cosine():
    index = TagIndex(["a", "b"], np.eye(2))
    generated = np.array([[[1, 0.9], [0, 1], [0, 1]]], dtype=np.float32)
    shares = dict(decode_votes(generated, index, neighbors=2, top_k=2, weighted=True)[0])
    # each sample votes for both words with its cosine: a gets 1/|(1, 0.9)|, b gets 0.9/|(1, 0.9)| + 1 + 1
    norm = np.hypot(1, 0.9)
    a, b = 1 / norm, 0.9 / norm + 2
    assert shares == pytest.approx({"a": a / (a + b), "b": b / (a + b)})
    assert list(shares) == ["b", "a"]  # best first
    plain = dict(decode_votes(generated, index, neighbors=2, top_k=2)[0])
    assert plain == pytest.approx({"a": 0.5, "b": 0.5})  # unweighted: 3 votes each of 6


def test_approximate_index_above_threshold_finds_neighbours(tmp_path):
    index = small_index(v=400, d=16, exact_threshold=100)
    assert not index.exact
    _, idx = index.search(index.vectors, 1)
    assert (idx[:, 0] == np.arange(400)).mean() >= 0.95
    index.save(tmp_path / "idx")
    loaded = TagIndex.load(tmp_path / "idx")
    assert not loaded.exact and loaded.words == index.words
    np.testing.assert_array_equal(
        loaded.search(index.vectors[:5], 3)[1], index.search(index.vectors[:5], 3)[1]
    )


def test_save_load_round_trip_and_errors(tmp_path):
    index = small_index()
    index.save(tmp_path / "idx")
    loaded = TagIndex.load(tmp_path / "idx")
    assert loaded.exact and loaded.words == index.words
    np.testing.assert_allclose(np.linalg.norm(loaded.vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    with pytest.raises(UserError, match="no tag index"):
        TagIndex.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="unique"):
        TagIndex(["a", "a"], np.eye(2))


def test_read_tag_data_joins_on_id(tmp_path):
    paths = make_tag_data(tmp_path)
    data = read_tag_data(paths["items"], paths["vocab"], paths["features"])
    assert data.features.shape == (len(data.ids), 16) and len(data.tags) == len(data.ids)
    assert set(data.split) == {"split", "split_image"}
    train_groups = {data.ids[r].rsplit("/", 1)[0] for r in data.rows("train")}
    test_groups = {data.ids[r].rsplit("/", 1)[0] for r in data.rows("test")}
    assert not train_groups & test_groups
    with pytest.raises(UserError, match="not found"):
        read_tag_data(tmp_path / "nope.jsonl", paths["vocab"], paths["features"])


def test_knn_and_top_from_scores():
    feats = np.array([[1, 0], [0, 1], [0.9, 0.1]], dtype=np.float32)
    tags = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float32)
    query = np.array([[1, 0.05]], dtype=np.float32)
    scores = knn_scores(feats, tags, query, k=2)
    # the 2 nearest are items 0 and 2; each votes its tags with its cosine, summed and divided by k
    cos0 = 1 / np.hypot(1, 0.05)
    cos2 = (0.9 + 0.05 * 0.1) / (np.hypot(1, 0.05) * np.hypot(0.9, 0.1))
    np.testing.assert_allclose(scores, [[(cos0 + cos2) / 2, 0.0, cos2 / 2]], rtol=1e-5)
    top = top_from_scores(scores, ["a", "b", "c"], 2)[0]
    assert [w for w, _ in top] == ["a", "c"] and top[0][1] == pytest.approx((cos0 + cos2) / 2, rel=1e-5)
    assert [w for w, _ in top_from_scores(scores, ["a", "b", "c"], 3, allowed={"b", "c"})[0]] == ["c", "b"]
    # exclude_self (queries are train items): item 0's own row is skipped, its nearest other is item 2
    cos = 0.9 / np.hypot(0.9, 0.1)
    np.testing.assert_allclose(
        knn_scores(feats, tags, feats[:1], k=1, exclude_self=True), [[cos, 0, cos]], rtol=1e-5
    )


def test_zeroshot_scores_softmax_over_top_classes():
    logits = np.array([[2.0, 0.0, 1.0]])
    class_to_tag = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    p_top = np.exp(2) / (np.exp(2) + np.exp(1))  # classes 0 and 2 are the top two
    expected = [[p_top * 1.0 + (1 - p_top) * 0.5, (1 - p_top) * 0.5]]
    np.testing.assert_allclose(zeroshot_scores(logits, class_to_tag, 2), expected)
    np.testing.assert_allclose(zeroshot_scores(logits, class_to_tag, 1), [[1.0, 0.0]])


def test_top_k_order_is_a_stable_argsort_without_the_full_sort():
    from tagan.tagging.index import top_k_order

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((50, 300)), 2)  # many ties
    scores[3] = 0.0  # a row of ties only
    for k in (1, 5, 40, 300, 400):
        assert np.array_equal(top_k_order(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])
