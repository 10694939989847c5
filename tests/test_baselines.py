"""Tag baselines on hand-made separable clusters, where every method's answer is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from tagan.evaluation.scoring import score, words_of
from tagan.tagging.baselines import ZeroShot, fit_baselines, frequency_prior, predict_baselines
from tagan.tagging.index import TagData, TagIndex

TOPICS = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2", "c3"], "d": ["d1", "d2", "d3"]}
WORDS = [w for ws in TOPICS.values() for w in ws]
TRAIN_IMAGES = {
    "a": 6,
    "b": 5,
    "c": 4,
    "d": 3,
}  # distinct counts: the prior's ranking has no ties across topics


def clusters(seed: int = 0) -> TagData:
    """Every image carries its topic's three tags; features (8-d) are the topic's one-hot times 10 plus noise.

    Per topic: TRAIN_IMAGES[topic] train images, then 2 val and 2 test images.
    """
    rng = np.random.default_rng(seed)
    ids, feats, tags, split = [], [], [], []
    for t, topic in enumerate(TOPICS):
        for i, part in enumerate(["train"] * TRAIN_IMAGES[topic] + ["val"] * 2 + ["test"] * 2):
            centre = np.zeros(8)
            centre[t] = 10.0
            ids.append(f"{topic}{i}")
            feats.append(centre + rng.normal(size=8) * 0.5)
            tags.append(list(TOPICS[topic]))
            split.append(part)
    return TagData(
        ids=ids,
        features=np.abs(np.array(feats, dtype=np.float32)),
        tags=tags,
        split={"split": np.array(split)},
        paths=[""] * len(ids),
        vocab=WORDS,
        train_counts={},
        backbone="tiny",
    )


def topic_index() -> TagIndex:
    """Word vectors: the topic's axis plus a small axis of the word's own (a topic's words are each other's neighbours)."""
    vectors = np.zeros((len(WORDS), 7), dtype=np.float32)
    for j, word in enumerate(WORDS):
        vectors[j, "abcd".index(word[0])] = 1.0
        vectors[j, 4 + int(word[1]) - 1] = 0.3
    return TagIndex(WORDS, vectors)


@pytest.fixture(scope="module")
def fitted():
    data, index = clusters(), topic_index()
    train, val, test = (data.rows(s) for s in ("train", "val", "test"))
    baselines = fit_baselines(
        data, index, train, val, knn_grid=[1, 3], mlp_hidden=32, mlp_epochs=60, mlp_lr=1e-2,
        mlp_weight_decay=0.0, mlp_dropout=0.0, seed=0,
    )  # fmt: skip
    preds = predict_baselines(baselines, data.features[test], index, top_k=10, neighbors=3)
    return data, index, test, baselines, preds


def test_prior_counts_train_tags_and_scores_as_hand_computed(fitted) -> None:
    data, index, test, baselines, preds = fitted
    expected_counts = [TRAIN_IMAGES[w[0]] for w in WORDS]
    assert frequency_prior(data, data.rows("train"), WORDS).tolist() == expected_counts
    assert baselines.prior.tolist() == expected_counts
    top5 = words_of(preds["prior"])[0][:5]
    assert top5[:3] == ["a1", "a2", "a3"] and set(top5[3:]) < set(
        TOPICS["b"]
    )  # a's 6 uses, then two of b's 5
    m = score(preds["prior"], data, test, len(WORDS))
    # 8 test images, 2 per topic: a finds 3 of its tags in the top 5, b finds 2, c and d none
    assert m["p_at_5"] == pytest.approx((2 * 3 / 5 + 2 * 2 / 5) / 8)
    assert m["r_at_5"] == pytest.approx((2 * 1.0 + 2 * 2 / 3) / 8)


@pytest.mark.parametrize("method", ["knn", "classifier", "regressor"])
def test_every_learned_baseline_ranks_the_images_own_topic_first(fitted, method) -> None:
    data, index, test, _, preds = fitted
    for row, tags in zip(test, words_of(preds[method])):
        assert set(tags[:3]) == set(data.tags[row]), (method, data.ids[row], tags)
    m = score(preds[method], data, test, len(WORDS))
    # three true tags per image: P@5 can be at most 3/5, and R@5 and mAP reach 1 only with all three first
    assert m["p_at_5"] == pytest.approx(0.6) and m["r_at_5"] == 1.0 and m["map"] == pytest.approx(1.0)


def test_knn_k_is_chosen_on_val_and_capped_by_the_train_size(fitted) -> None:
    data, index, _, baselines, _ = fitted
    train, val = data.rows("train"), data.rows("val")
    assert baselines.knn_k == 1  # both k score P@5 = 0.6 on val: max() keeps the first of the grid
    few = fit_baselines(
        data, index, train[:2], val, knn_grid=[40], mlp_hidden=4, mlp_epochs=1, mlp_lr=1e-3,
        mlp_weight_decay=0.0, mlp_dropout=0.0, seed=0,
    )  # fmt: skip
    assert few.knn_k == 2


def test_zeroshot_classes_vote_for_their_tags() -> None:
    """One ImageNet 'class' per topic axis; each class maps to its topic's first two tags."""
    data = clusters()
    weight = np.zeros((4, 8), dtype=np.float32)
    weight[np.arange(4), np.arange(4)] = 1.0  # class t's logit = feature t
    class_to_tag = np.zeros((4, len(WORDS)), dtype=np.float32)
    for t, topic in enumerate(TOPICS):
        class_to_tag[t, WORDS.index(f"{topic}1")] = 1.0
        class_to_tag[t, WORDS.index(f"{topic}2")] = 0.5
    zs = ZeroShot(weight, np.zeros(4, dtype=np.float32), class_to_tag, top_classes=1)
    test = data.rows("test")
    scores = zs.scores(data.features[test])  # top class only: softmax over one class = 1
    for row, s in zip(test, scores):
        topic = data.ids[row][0]
        expected = np.zeros(len(WORDS))
        expected[WORDS.index(f"{topic}1")], expected[WORDS.index(f"{topic}2")] = 1.0, 0.5
        np.testing.assert_allclose(s, expected)
