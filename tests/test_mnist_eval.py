"""Shared generator evaluation: metric keys, real data scoring better than noise, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_mnist_classifier import fake_mnist  # pytest puts tests/ on sys.path

from tagan.mnist.evaluation import evaluate_generator
from tagan.models.mnist import ClassifierConfig, MnistClassifier, infer


@pytest.fixture(scope="module")
def setup() -> tuple[dict[str, np.ndarray], MnistClassifier]:
    torch.manual_seed(0)
    return fake_mnist(n_train=256, n_eval=128), MnistClassifier(
        config=ClassifierConfig(channels=(4, 8), hidden=8)
    )


def test_real_images_beat_noise(setup: tuple[dict[str, np.ndarray], MnistClassifier]) -> None:
    data, clf = setup
    grid = np.array([0.1, 0.2, 0.4, 0.8])
    real = evaluate_generator(data["x_train"][:128] / 255.0, data["y_train"][:128], data, clf, grid)
    noise = evaluate_generator(np.random.default_rng(0).random((128, 28, 28)), None, data, clf, grid)
    assert {"parzen_ll", "parzen_se", "parzen_sigma", "fid", "fid_real_floor", "conditional_accuracy"} <= set(
        real
    )
    assert "conditional_accuracy" not in noise
    assert real["parzen_ll"] > noise["parzen_ll"] and real["fid"] < noise["fid"]
    assert real["parzen_sigma"] in grid and real["fid_real_floor"] == noise["fid_real_floor"]


def test_conditional_accuracy_is_the_classifiers_agreement_with_the_labels(
    setup: tuple[dict[str, np.ndarray], MnistClassifier],
) -> None:
    data, clf = setup
    x = data["x_train"][:64] / 255.0
    predicted = infer(clf, x)[1].argmax(1)  # what the (untrained) judge says each image is
    grid = np.array([0.2])
    assert evaluate_generator(x, predicted, data, clf, grid)["conditional_accuracy"] == 1.0
    assert evaluate_generator(x, (predicted + 1) % 10, data, clf, grid)["conditional_accuracy"] == 0.0
    half = np.where(np.arange(64) < 16, predicted, (predicted + 1) % 10)
    assert evaluate_generator(x, half, data, clf, grid)["conditional_accuracy"] == 0.25


def test_bad_samples_are_rejected(setup: tuple[dict[str, np.ndarray], MnistClassifier]) -> None:
    data, clf = setup
    with pytest.raises(ValueError, match=r"\[0, 1\].*\(x \+ 1\) / 2"):
        evaluate_generator(np.full((4, 28, 28), -1.0), None, data, clf)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        evaluate_generator(np.zeros((4, 32, 32)), None, data, clf)
    with pytest.raises(ValueError, match="sample_labels has 3 entries for 4 samples"):
        evaluate_generator(np.zeros((4, 1, 28, 28)), np.zeros(3), data, clf)


def test_within_class_std_exposes_mode_collapse(setup: tuple[dict[str, np.ndarray], MnistClassifier]) -> None:
    data, clf = setup
    x, y = data["x_train"][:128] / 255.0, data["y_train"][:128]
    collapsed = np.stack([x[np.flatnonzero(y == k)[0]] for k in y])  # every sample of a digit identical
    grid = np.array([0.1, 0.2, 0.4])
    diverse = evaluate_generator(x, y, data, clf, grid)
    same = evaluate_generator(collapsed, y, data, clf, grid)
    assert same["within_class_std"] == 0.0 < diverse["within_class_std"]
    assert same["within_class_std_real"] == diverse["within_class_std_real"] > 0
