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
from tagan import config, gan, training, utils
from tagan.dcgan_features import labelled_subset, svm_accuracy, to_dcgan_input, to_unit_28
from tagan.models.dcgan import ModelConfig, build


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
    with pytest.raises(utils.UserError, match="svm_labels_per_class"):
        labelled_subset(labels, 21, seed=0)


def test_svm_separates_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 20)) * 5
    y = np.repeat(np.arange(10), 10)
    x = centres[y] + rng.normal(size=(100, 20))
    acc, c = svm_accuracy(x, y, x, y, [0.01, 1.0], seed=0)
    assert acc == 1.0 and c in (0.01, 1.0)


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
    assert len(out.rows) == 1 and np.isfinite(out.rows[0]["d_loss"])
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


def test_stage_run_writes_all_outputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / "resume")
    npz, clf = write_fixtures(tmp_path)
    names = ["model.pt", "metrics.json", "loss.csv", "samples.png", "walk.png"]
    out = [tmp_path / "out" / n for n in names]
    cfg = tiny(steps=3)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_every=2))
    metrics = run(cfg, config.Runtime(device="cpu"), npz, clf, *out)
    assert all(p.exists() for p in out)
    assert utils.read_json(out[1]) == metrics
    for key in ("svm_dcgan_accuracy", "svm_random_d_accuracy", "svm_raw_pixels_accuracy", "parzen_ll", "fid"):
        assert key in metrics
    from PIL import Image

    assert Image.open(out[4]).size == (3 * 30 + 2, 2 * 30 + 2)  # walk: rows x steps
    state = utils.load_checkpoint(out[0])
    assert state["config"]["model"]["d_width"] == 4 and set(state["state_dict"]) == {"g", "d"}
    assert not list((tmp_path / "resume").glob("*.pt"))
