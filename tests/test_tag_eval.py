"""Tagging metrics on hand-made cases, and a tiny tag_eval run whose bundle the Tagger serves."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tag_cgan import Params as CGANParams
from pipeline.tag_cgan import run as train_cgan
from pipeline.tag_embeddings import Params as EmbParams
from pipeline.tag_embeddings import run as embed
from pipeline.tag_eval import Params, run
from tagan import metrics
from tagan.config import Runtime, from_dict
from tagan.errors import UserError
from tagan.evaluation.reports import caption
from tagan.evaluation.scoring import paired_group_bootstrap, precision_at_k_per_image
from tagan.files import read_json
from tagan.tagging.baselines import class_to_tag_matrix
from tagan.tagging.bundle import Bundle
from tagan.tagging.index import read_tag_data
from tagan.tagging.tagger import Tagger
from tests.tag_fixtures import make_tag_data, tiny_tag_cgan_params


def test_precision_recall_f1_at_k_known_answers():
    pred = [["a", "b", "c", "d", "e"], ["x", "y", "z", "w", "v"]]
    truth = [{"a", "c", "q"}, {"v"}]
    p, r, f = metrics.precision_recall_at_k(pred, truth, 5)
    assert p == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert r == pytest.approx((2 / 3 + 1) / 2)
    f1_a = 2 * (0.4 * 2 / 3) / (0.4 + 2 / 3)
    f1_b = 2 * (0.2 * 1) / (0.2 + 1)
    assert f == pytest.approx((f1_a + f1_b) / 2)
    assert metrics.precision_recall_at_k([["a"]], [set()], 5) == (0.0, 0.0, 0.0)  # untagged images skipped


def test_average_precision_known_answers():
    assert metrics.average_precision(["a", "x", "b"], {"a", "b"}) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.average_precision(["x", "a"], {"a"}) == pytest.approx(0.5)
    assert metrics.average_precision(["x", "y"], {"a"}) == 0.0
    assert (
        metrics.average_precision(["a", "b"], {"a", "b", "c", "d"}) == 1.0
    )  # normalised by min(|truth|, len)


def test_tagging_metrics_coverage_and_diversity():
    m = metrics.tagging_metrics([["a", "b"], ["a", "c"]], [{"a"}, {"c"}], vocab_size=10)
    assert m["coverage"] == 3 and m["coverage_frac"] == pytest.approx(0.3)
    same = np.ones((2, 4, 3))
    assert metrics.sample_diversity(same)["mean_pairwise_cosine_distance"] == pytest.approx(0.0)
    opposite = np.array([[[1, 0], [-1, 0]]], dtype=float)
    d = metrics.sample_diversity(opposite, nearest=np.array([[0, 1]]))
    assert d["mean_pairwise_cosine_distance"] == pytest.approx(2.0) and d["distinct_nearest_words"] == 2.0


def test_group_bootstrap_resamples_whole_groups():
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    same = np.linspace(0, 1, 10)
    assert paired_group_bootstrap(same, same, groups) == (0.0, 0.0, 0.0)
    better = same + 0.2  # better on every image: the whole interval is the margin
    assert paired_group_bootstrap(better, same, groups) == pytest.approx((0.2, 0.2, 0.2))
    # +1 on one group, -1 on the other two: the mean is -0.2, and resampling groups spans both signs
    diff = np.array([1.0] * 4 + [-1.0] * 6)
    margin, lo, hi = paired_group_bootstrap(diff, np.zeros(10), groups, seed=3)
    assert margin == pytest.approx(-0.2) and lo < -0.5 and hi > 0.3
    assert (margin, lo, hi) == paired_group_bootstrap(diff, np.zeros(10), groups, seed=3)  # seeded
    with pytest.raises(ValueError, match="one group per image"):
        paired_group_bootstrap(diff, np.zeros(10), groups[:5])
    assert precision_at_k_per_image([["a", "b"], ["c"], ["x"]], [{"a"}, set(), {"x"}], 5).tolist() == [
        0.2,
        0.2,
    ]  # untagged images skipped, as in precision_recall_at_k


def test_class_names_map_to_tags_by_exact_word_with_glove():
    sim = class_to_tag_matrix(
        ["tabby cat", "lemon", "guitar pick"], ["cat", "lemon", "guitar", "road"], "glove", 2
    )
    assert sim[0, 0] == 1.0 and sim[1, 1] == 1.0 and sim[2, 2] == 1.0
    assert (sim > 0).sum(1).max() <= 2  # at most tags_per_class tags per class


def test_tiny_run_scores_every_method_and_bundle_serves_tagger(tmp_path, monkeypatch):
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    paths = make_tag_data(tmp_path / "data")
    embed(EmbParams(dim=8, epochs=5), Runtime(), paths["items"], paths["vocab"], tmp_path / "emb")
    train = {"steps": 10, "log_every": 5}
    for preset, section in {
        "paper": tiny_tag_cgan_params(train=train),
        "strong": tiny_tag_cgan_params(
            model={"output": "vocab"},
            optim={"optimizer": "adam", "lr": 1e-2, "lr_d": 1e-3},
            train={**train, "aux_weight": 1.0, "steps": 60},
        ),
    }.items():
        train_cgan(
            from_dict(CGANParams, section, f"tag_cgan.{preset}"),
            Runtime(num_threads=1),
            preset,
            paths["items"],
            paths["vocab"],
            paths["features"],
            tmp_path / "emb",
            tmp_path / f"{preset}.pt",
            tmp_path / f"{preset}.csv",
        )
    cfg = Params(samples=8, mlp_epochs=5, knn_k=[1, 3], tuned_neighbors=[1, 3], examples=4)
    m = run(
        cfg,
        Runtime(num_threads=1),
        paths["items"],
        paths["vocab"],
        paths["features"],
        tmp_path / "emb",
        {"paper": tmp_path / "paper.pt", "strong": tmp_path / "strong.pt"},
        tmp_path / "bundle",
        tmp_path / "rep",
    )
    data = read_tag_data(paths["items"], paths["vocab"], paths["features"])
    test = data.rows("test")
    truth = [set(data.tags[r]) for r in test]
    # the topics' features are separable and an image's 1-2 tags come from its topic's 3 words: the best top 5
    # holds every true tag, which kNN finds
    best_p5 = np.mean([min(len(t), 5) / 5 for t in truth])
    assert m["knn.p_at_5"] == pytest.approx(best_p5) and m["knn.r_at_5"] == 1.0
    # the prior's top 5 are the 5 most frequent train tags (vocab.json's counts, computed by the fixture)
    counts = read_json(paths["vocab"])["train_counts"]
    ranked = sorted(counts, key=lambda w: -counts[w])
    assert counts[ranked[4]] > counts[ranked[5]]  # no tie at the cut: the expected top 5 is unambiguous
    assert m["prior.p_at_5"] == pytest.approx(np.mean([len(t & set(ranked[:5])) / 5 for t in truth]))
    # the strong CGAN (60 steps) generates the image's topic words, nearly as well as kNN and far above the prior
    assert m["cgan_strong_tuned.r_at_5"] >= 0.9 and m["cgan_strong_tuned.p_at_5"] >= 0.9 * best_p5
    assert m["cgan_strong_tuned.p_at_5"] > 2 * m["prior.p_at_5"]
    assert "image_split.knn.p_at_5" in m and "image_split.cgan_paper.p_at_5" not in m
    assert m["knn.p_at_5"] > m["prior.p_at_5"]  # features cluster by topic
    # the margin over the prior is the difference of the P@5s; resampling the 6 test groups keeps the
    # strong CGAN's interval above 0 (it wins in every topic)
    margin = m["cgan_strong_tuned.p_at_5"] - m["prior.p_at_5"]
    assert m["cgan_strong_tuned.p_at_5_vs_prior"] == pytest.approx(margin)
    assert (
        0 < m["cgan_strong_tuned.p_at_5_vs_prior_lo"] <= margin <= m["cgan_strong_tuned.p_at_5_vs_prior_hi"]
    )
    assert "prior.p_at_5_vs_prior" not in m and "image_split.knn.p_at_5_vs_prior" not in m
    table = (tmp_path / "rep" / "tag_eval_table.md").read_text()
    assert "cgan_strong_tuned" in table and "By-image split" in table and "P@5 - prior [95% CI]" in table
    assert (tmp_path / "rep" / "tag_examples.md").read_text().count("\n|") >= 5
    assert (tmp_path / "rep" / "tag_examples.png").stat().st_size > 0

    bundle = Bundle.load(tmp_path / "bundle")
    assert set(bundle.methods) == {"prior", "knn", "classifier", "regressor", "cgan_paper", "cgan_paper_tuned",
                                   "cgan_strong", "cgan_strong_tuned"}  # fmt: skip
    assert bundle.methods["cgan_strong_tuned"].settings["samples"] == cfg.tuned_samples
    for (
        method
    ) in bundle.methods:  # every row is what the CLI's Tagger gives with its defaults (no samples=...)
        tags = Tagger.load(tmp_path / "bundle", method).tag(data.features[test], top_k=cfg.top_k)
        got = metrics.tagging_metrics([[w for w, _ in t] for t in tags], truth, 12)
        assert got == pytest.approx({k: m[f"{method}.{k}"] for k in got}), method
        assert bundle.test_metrics[method]["p_at_5"] == pytest.approx(m[f"{method}.p_at_5"])
    knn = Tagger.load(tmp_path / "bundle", "knn")
    cgan = Tagger.load(tmp_path / "bundle", "cgan")
    assert cgan.method == "cgan_strong_tuned" and cgan.info["vocab_size"] == 12
    assert cgan.path("cat") == []  # no open vocabulary in this bundle
    out = cgan.tag(data.features[test[:3]], top_k=4, samples=6, seed=0)
    assert out == cgan.tag(data.features[test[:3]], top_k=4, samples=6, seed=0) and all(
        len(t) <= 4 for t in out
    )
    only = cgan.tag(data.features[test[:3]], top_k=4, samples=6, allowed={"cat", "dog"})
    assert all(w in {"cat", "dog"} for t in only for w, _ in t)
    with pytest.raises(UserError, match="choose one of"):
        Tagger.load(tmp_path / "bundle", "clip")
    with pytest.raises(UserError, match="features must be"):
        knn.tag(np.zeros((2, 3), dtype=np.float32))


def test_example_captions_keep_whole_words() -> None:
    words = ["white goods", "dish washer", "dishwasher", "kitchen", "microwave", "microwave oven"]
    lines = caption("tagan: ", words, 2)
    assert lines == ["tagan: white goods, dish washer,", "dishwasher, kitchen, microwave, ..."]
    assert all(len(line) <= 37 for line in lines) and caption("tagan: ", [], 2) == ["tagan:"]
