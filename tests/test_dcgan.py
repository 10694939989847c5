"""DCGAN: shapes, the paper's init and BN placement, D features, SVM protocol, one step, seeds, stage outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_mnist_cgan import write_fixtures
from torch import nn

from pipeline.dcgan import Params, run
from tagan import config, errors, files, gan, training, utils
from tagan.mnist.dcgan import (
    extract_features,
    labelled_subset,
    layer_columns,
    span_basis,
    svm_accuracy,
    to_dcgan_input,
    to_unit_28,
    unit_scale,
)
from tagan.models.dcgan import ModelConfig, build
from tagan.readers.mnist import load_npz


def tiny(steps: int = 2, **kw: object) -> Params:
    base = dict(model=dict(g_width=4, d_width=4, z_dim=8),
                train=dict(batch_size=16, steps=steps, checkpoint_every=0, log_every=1),
                eval_samples=40, svm_labels_per_class=3, svm_c_grid=[0.1, 1.0], walk_rows=2, walk_steps=3,
                sigma_grid=[0.1, 0.2, 0.4])  # fmt: skip
    base.update(kw)
    return config.from_dict(Params, base, "dcgan")


def train(cfg: Params, images: torch.Tensor) -> gan.FitResult:
    """The stage's training on tensors: build with the stage's seed, then the trainer."""
    utils.seed_everything(cfg.seed)
    g, d = build(cfg.model)
    task = gan.ImageGANTask(images, cfg.model.z_dim)
    return gan.fit(task, g, d, cfg.train, cfg.optim, name="dcgan", config_dict=config.to_dict(cfg),
                   seed=cfg.seed, noise_seed=cfg.seed + 1)  # fmt: skip


def test_shapes_and_features() -> None:
    g, d = build(ModelConfig(z_dim=8, g_width=4, d_width=4))
    x = g(torch.randn(3, 8))
    assert x.shape == (3, 1, 32, 32) and x.abs().max() <= 1  # tanh output
    assert d(x).shape == (3,)
    assert d.features(x).shape == (3, (4 + 8 + 16) * 16)  # every conv layer max-pooled to 4x4
    assert d.features(x, layers=[2, 3]).shape == (3, (8 + 16) * 16)  # the headline: the deeper layers
    assert d.features(x, grid=2, layers=[1]).shape == (3, 4 * 4)
    every = d.features(x)
    assert torch.equal(d.features(x, layers=[3]), every[:, (4 + 8) * 16 :])
    every = extract_features(d, x, 4)  # (eval mode: batch-norm running statistics)
    for layers in ([1], [2, 3], [1, 3]):  # the stage slices every-layer features instead of running D twice
        assert np.array_equal(every[:, layer_columns(d, 4, layers)], extract_features(d, x, 4, layers))
    for bad in ([], [3, 2], [0], [4], [2, 2]):
        with pytest.raises(ValueError, match="layers"):
            d.features(x, layers=bad)


@pytest.mark.parametrize(
    ("key", "value"),
    [("feature_layers", []), ("feature_layers", [3, 2]), ("feature_layers", [0, 1]), ("feature_layers", [4]),
     ("svm_scaling", "minmax"), ("svm_c_grid", [0.1, -1.0])],
)  # fmt: skip
def test_bad_params_name_the_key(key: str, value: object) -> None:
    with pytest.raises(config.ParamsError, match=key):
        tiny(**{key: value})


def test_paper_guidelines() -> None:
    torch.manual_seed(0)
    g, d = build(ModelConfig(g_width=32, d_width=32))
    convs = [m for m in [*g.modules(), *d.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(abs(m.weight.std().item() - 0.02) < 0.004 for m in convs)  # N(0, 0.02)
    assert not isinstance(d.blocks[0][1], nn.BatchNorm2d)  # no BN on D's input layer
    assert isinstance(g.net[-1], nn.Tanh) and isinstance(g.net[-2], nn.ConvTranspose2d)  # no BN on G's output
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))


def test_padding_round_trip() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    x = to_dcgan_input(images)
    assert x.shape == (2, 1, 32, 32) and x.min() >= -1 and x.max() <= 1 and (x[:, :, :2] == -1).all()
    np.testing.assert_allclose(to_unit_28(x), images / 255.0, atol=1e-6)


def test_labelled_subset_is_balanced_and_seeded() -> None:
    labels = np.repeat(np.arange(10), 20)
    idx = labelled_subset(labels, 5, seed=0)
    assert np.bincount(labels[idx]).tolist() == [5] * 10
    assert np.array_equal(idx, labelled_subset(labels, 5, seed=0))
    with pytest.raises(errors.UserError, match="svm_labels_per_class"):
        labelled_subset(labels, 21, seed=0)


def test_svm_separates_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 20)) * 5
    y = np.repeat(np.arange(10), 10)
    x = centres[y] + rng.normal(size=(100, 20))
    acc, c = svm_accuracy(x, y, x, y, [0.01, 1.0], seed=0)
    assert acc == 1.0 and c in (0.01, 1.0)


def overlapping_classes(n_features: int, seed: int = 2) -> tuple[np.ndarray, ...]:
    """4 overlapping classes (train 60, test 200): accuracies well below 1, so C matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, n_features)) * 0.3
    y, y_test = np.repeat(np.arange(4), 15), np.arange(200) % 4
    return (
        centres[y] + rng.normal(size=(60, n_features)),
        y,
        centres[y_test] + rng.normal(size=(200, n_features)),
        y_test,
    )


@pytest.mark.parametrize("n_features", [20, 300])  # fewer and more features than images (the span basis)
def test_unit_scaling_makes_the_svm_scale_free(n_features: int) -> None:
    x, y, x_test, y_test = overlapping_classes(n_features)
    grid = [0.01, 0.1, 1.0, 10.0]
    for factor in (1e-3, 1e3):
        scaled = svm_accuracy(x * factor, y, x_test * factor, y_test, grid, seed=0, scaling="unit")
        assert scaled == pytest.approx(svm_accuracy(x, y, x_test, y_test, grid, seed=0, scaling="unit"))
    assert unit_scale(x / unit_scale(x)) == pytest.approx(1.0)


def test_unit_scaling_is_unscaled_svm_with_c_times_the_squared_norm() -> None:
    """Dividing by s and fitting with C = fitting unscaled with C / s^2, but for liblinear's penalised bias."""
    from sklearn.svm import LinearSVC

    x, y, x_test, _ = overlapping_classes(20)
    x, x_test = x + 5.0, x_test + 5.0  # far from the origin: the bias matters, so fit it unpenalised
    s = unit_scale(x)
    big = 1e4  # intercept_scaling: the bias feature's own penalty becomes negligible
    a = LinearSVC(C=0.1, dual=False, intercept_scaling=big / s).fit(x / s, y)
    b = LinearSVC(C=0.1 / s**2, dual=False, intercept_scaling=big).fit(x, y)
    np.testing.assert_allclose(a.coef_ / s, b.coef_, rtol=1e-3, atol=1e-6)
    assert np.array_equal(a.predict(x_test / s), b.predict(x_test))


def test_span_basis_is_orthonormal_and_spans_the_rows() -> None:
    x = np.random.default_rng(3).normal(size=(30, 200))
    x[-1] = x[0] + x[1]  # rank 29
    basis = span_basis(x)
    assert basis.shape == (200, 29)
    np.testing.assert_allclose(basis.T @ basis, np.eye(29), atol=1e-8)
    np.testing.assert_allclose(x @ basis @ basis.T, x, atol=1e-8)  # projecting onto the span keeps the rows


def test_svm_in_the_span_of_wide_features_matches_the_plain_svm() -> None:
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 15)  # 60 images, 4 classes
    x = rng.normal(size=(4, 500))[y] * 0.5 + rng.normal(size=(60, 500))  # more features than images
    x_test = rng.normal(size=(4, 500))[np.arange(200) % 4] * 0.5 + rng.normal(size=(200, 500))
    y_test = np.arange(200) % 4
    acc, _ = svm_accuracy(x, y, x_test, y_test, [0.01], seed=0)
    plain = LinearSVC(C=0.01, max_iter=5000, random_state=0).fit(x, y)
    assert acc == pytest.approx(float((plain.predict(x_test) == y_test).mean()), abs=0.01)
    binary = y < 2  # two classes: one weight vector
    acc2, _ = svm_accuracy(x[binary], y[binary], x_test, np.minimum(y_test, 1), [0.01], seed=0)
    plain2 = LinearSVC(C=0.01, max_iter=5000, random_state=0).fit(x[binary], y[binary])
    assert acc2 == pytest.approx(float((plain2.predict(x_test) == np.minimum(y_test, 1)).mean()), abs=0.01)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    from test_mnist_classifier import fake_mnist

    return to_dcgan_input(fake_mnist(n_train=64, n_eval=8)["x_train"])


def test_one_step_changes_both_networks(images: torch.Tensor, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    cfg = tiny(steps=1)
    utils.seed_everything(cfg.seed)
    g0, d0 = build(cfg.model)
    out = train(cfg, images)
    (row,) = out.rows
    assert row["d_loss"] == pytest.approx(2 * np.log(2), abs=0.05)  # N(0, 0.02) init: D starts at chance
    for before, after in ((g0, out.g), (d0, out.d)):
        assert any(
            not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values())
        )


def test_same_seed_same_weights(images: torch.Tensor, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    cfg = tiny(steps=3)
    a, b = (train(cfg, images).g.state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train(dataclasses.replace(cfg, seed=1), images).g.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_teaches_d_to_tell_real_from_fake(images: torch.Tensor, tmp_path: Path, monkeypatch) -> None:
    """From chance (D's loss 2 log 2) to a D whose logits rank real digits above G's: a sign or target mix-up in
    the losses, or an optimiser that never steps D, keeps it at chance or worse."""
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    rows = train(tiny(steps=16), images).rows
    assert rows[0]["d_loss"] == pytest.approx(2 * np.log(2), abs=0.05)
    last = rows[-4:]
    assert np.mean([r["d_loss"] for r in last]) < 2 * np.log(2) - 0.2
    assert all(r["d_real"] > r["d_fake"] for r in last)


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_stage_run_writes_all_outputs(dataset: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / "resume")
    npz, clf = write_fixtures(tmp_path)
    if dataset == "fashion":
        clf = tmp_path / "absent.pt"  # Fashion-MNIST never needs the MNIST judge
    names = ["model.pt", "metrics.json", "loss.csv", "samples.png", "walk.png"]
    out = [tmp_path / "out" / n for n in names]
    cfg = tiny(steps=3)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=2))
    metrics = run(cfg, config.Runtime(device="cpu", num_threads=1), dataset, npz, clf, *out)
    assert all(p.exists() for p in out)
    assert files.read_json(out[1]) == metrics
    for name in (
        "svm_dcgan",
        "svm_random_d",
        "svm_dcgan_all_layers",
        "svm_random_d_all_layers",
        "svm_raw_pixels",
    ):
        assert 0 <= metrics[f"{name}_accuracy"] <= 1 and metrics[f"{name}_c"] in cfg.svm_c_grid
    assert metrics["svm_margin_over_random_d"] == pytest.approx(
        metrics["svm_dcgan_accuracy"] - metrics["svm_random_d_accuracy"]
    )
    assert "parzen_ll" in metrics and ("fid" in metrics) == (dataset == "mnist")
    # The SVM numbers are those of the saved D's features (and the raw pixels) on the labelled subset: an SVM
    # fitted here on the same features gives them exactly, and the trained D's features are not the random D's.
    splits = load_npz(npz)
    idx = labelled_subset(splits["y_train"], cfg.svm_labels_per_class, cfg.seed)
    assert metrics["svm_labels"] == len(idx) == 10 * cfg.svm_labels_per_class
    x_lab, y_lab = to_dcgan_input(splits["x_train"][idx]), splits["y_train"][idx]
    x_test, y_test = to_dcgan_input(splits["x_test"]), splits["y_test"]
    state = utils.load_checkpoint(out[0])
    _, d = build(ModelConfig(**state["config"]["model"]))
    d.load_state_dict(state["state_dict"]["d"])
    layers = cfg.feature_layers
    expected = {
        "svm_raw_pixels": (x_lab.flatten(1).numpy(), x_test.flatten(1).numpy()),
        "svm_dcgan": (extract_features(d, x_lab, cfg.feature_grid, layers),
                      extract_features(d, x_test, cfg.feature_grid, layers)),
    }  # fmt: skip
    for name, (lab, test) in expected.items():
        acc, c = svm_accuracy(lab, y_lab, test, y_test, cfg.svm_c_grid, cfg.seed, cfg.svm_scaling)
        assert (metrics[f"{name}_accuracy"], metrics[f"{name}_c"]) == (round(acc, 5), c), name
        assert metrics[f"{name}_sq_norm"] == round(unit_scale(lab) ** 2, 3), name
    assert metrics["svm_dcgan_sq_norm"] != metrics["svm_random_d_sq_norm"]
    from PIL import Image

    assert Image.open(out[4]).size == (3 * 30 + 2, 2 * 30 + 2)  # walk: rows x steps
    assert state["config"]["model"]["d_width"] == 4 and set(state["state_dict"]) == {"g", "d"}
    assert state["config"]["dataset"] == dataset
    assert not list((tmp_path / "resume").glob("*.pt"))


def test_mnist_needs_the_judge(tmp_path: Path) -> None:
    npz, _ = write_fixtures(tmp_path)
    with pytest.raises(errors.UserError, match="mnist_classifier"):
        run(tiny(), config.Runtime(device="cpu"), "mnist", npz, tmp_path / "absent.pt",
            *(tmp_path / n for n in ("m.pt", "m.json", "l.csv", "s.png", "w.png")))  # fmt: skip
