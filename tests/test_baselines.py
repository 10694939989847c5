"""The baseline methods (tagan.tagging.methods.baselines) on hand-made separable clusters, where every answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from tagan.evaluation.scoring import score, words_of
from tagan.tagging import methods
from tagan.tagging.baselines import frequency_prior
from tagan.tagging.bundle import fresh_bundle_dir
from tagan.tagging.index import TagData, TagIndex

MLP = dict(hidden=32, epochs=60, lr=1e-2, weight_decay=0.0, dropout=0.0)

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
def fitted(tmp_path_factory):
    data, index = clusters(), topic_index()
    train, val, test = (data.rows(s) for s in ("train", "val", "test"))
    ctx = methods.FitContext(
        data, train, val, methods.Resources(fresh_bundle_dir(tmp_path_factory.mktemp("b"), index))
    )
    plan = {"prior": {}, "knn": {"k_grid": [1, 3]}, "classifier": MLP, "regressor": {**MLP, "neighbors": 3}}
    fits = {name: methods.get_method(name).fit(ctx, **options) for name, options in plan.items()}
    preds = {name: m.tag(data.features[test], top_k=10) for name, m in fits.items()}
    return data, ctx, test, fits, preds


def test_prior_counts_train_tags_and_scores_as_hand_computed(fitted) -> None:
    data, _, test, fits, preds = fitted
    expected_counts = [TRAIN_IMAGES[w[0]] for w in WORDS]
    assert frequency_prior(data, data.rows("train"), WORDS).tolist() == expected_counts
    assert fits["prior"].counts.tolist() == expected_counts
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
    data, _, test, _, preds = fitted
    for row, tags in zip(test, words_of(preds[method])):
        assert set(tags[:3]) == set(data.tags[row]), (method, data.ids[row], tags)
    m = score(preds[method], data, test, len(WORDS))
    # three true tags per image: P@5 can be at most 3/5, and R@5 and mAP reach 1 only with all three first
    assert m["p_at_5"] == pytest.approx(0.6) and m["r_at_5"] == 1.0 and m["map"] == pytest.approx(1.0)


def test_knn_k_is_chosen_on_val_and_capped_by_the_train_size(fitted) -> None:
    data, ctx, _, fits, _ = fitted
    assert fits["knn"].k == 1  # both k score P@5 = 0.6 on val: max() keeps the first of the grid
    assert fits["knn"].describe(data.features[:1]) == {"k": 1}  # reported beside its test metrics
    few = methods.FitContext(data, ctx.train[:2], ctx.val, ctx.resources)
    assert methods.get_method("knn").fit(few, k_grid=[40]).k == 2


def test_zeroshot_classes_vote_for_their_tags(tmp_path) -> None:
    """One ImageNet 'class' per topic axis; each class maps to its topic's first two tags."""
    data = clusters()
    weight = np.zeros((4, 8), dtype=np.float32)
    weight[np.arange(4), np.arange(4)] = 1.0  # class t's logit = feature t
    class_to_tag = np.zeros((4, len(WORDS)), dtype=np.float32)
    for t, topic in enumerate(TOPICS):
        class_to_tag[t, WORDS.index(f"{topic}1")] = 1.0
        class_to_tag[t, WORDS.index(f"{topic}2")] = 0.5
    bundle = fresh_bundle_dir(tmp_path / "b", topic_index(), head=(weight, np.zeros(4, dtype=np.float32)))
    cls = methods.get_method("zeroshot")
    zs = cls(cls.Settings(top=1), methods.Resources(bundle), class_to_tag)
    test = data.rows("test")
    scores = zs.scores(data.features[test])  # top class only: softmax over one class = 1
    for row, s in zip(test, scores):
        topic = data.ids[row][0]
        expected = np.zeros(len(WORDS))
        expected[WORDS.index(f"{topic}1")], expected[WORDS.index(f"{topic}2")] = 1.0, 0.5
        np.testing.assert_allclose(s, expected)
