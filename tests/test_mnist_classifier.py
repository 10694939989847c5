"""MNIST classifier: shapes, one optimisation step, augmentation, the stage's run() and its loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.mnist_classifier import Params, run
from tagan import config
from tagan.config import ParamsError, Runtime
from tagan.errors import UserError
from tagan.files import read_json, save_npz
from tagan.mnist.classifier import random_shift
from tagan.models.mnist import ClassifierConfig, MnistClassifier, infer, load_classifier


def fake_mnist(n_train: int = 512, n_eval: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Separable fake digits: class k lights up row band k (plus noise)."""
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 + 2 * k : 4 + 2 * k, 4:24] = 255
        return x, y.astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = make(n_train), make(n_eval), make(n_eval)
    return {"x_train": xt, "y_train": yt, "x_val": xv, "y_val": yv, "x_test": xs, "y_test": ys}


def test_shapes() -> None:
    model = MnistClassifier(config=ClassifierConfig(channels=(4, 8), hidden=16))
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == (3, 10) and model.features(x).shape == (3, 16)
    feats, logits = infer(model, np.zeros((5, 28, 28), np.uint8), batch_size=2)
    assert feats.shape == (5, 16) and logits.shape == (5, 10) and model.training  # mode restored


def test_one_optimisation_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = MnistClassifier(config=ClassifierConfig(channels=(4, 8), hidden=16, dropout=0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    before = F.cross_entropy(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert F.cross_entropy(model(x), y).item() < before.item()


def test_random_shift_translates_without_changing_content() -> None:
    torch.manual_seed(0)
    x = torch.zeros(8, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    out = random_shift(x, 2)
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 28, pos % 28
    assert rows.sub(14).abs().max() <= 2 and cols.sub(14).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1  # it does move the images (differently)
    assert random_shift(x, 0) is x


def tiny_params(**kw: object) -> Params:
    base = {"channels": (4, 8), "hidden": 16, "epochs": 2, "batch_size": 64, "lr": 1e-2, "log_every": 2}
    return Params(**{**base, "checkpoint_every": 0, **kw})


def test_run_trains_writes_outputs_and_loads(tmp_path: Path) -> None:
    save_npz(tmp_path / "mnist.npz", **fake_mnist())
    paths = [tmp_path / "mnist.npz", tmp_path / "clf.pt", tmp_path / "m.json", tmp_path / "curve.csv"]
    metrics = run(tiny_params(), Runtime(device="cpu", num_threads=1), *paths)
    assert metrics["steps"] == 16 and metrics["n_train"] == 512
    assert metrics["test_accuracy"] > 0.9  # the fake classes are easy
    assert read_json(tmp_path / "m.json") == metrics
    header, *rows = (tmp_path / "curve.csv").read_text().splitlines()
    assert header == "step,epoch,loss,train_acc,lr" and len(rows) == 8

    model = load_classifier(tmp_path / "clf.pt", "cpu")
    assert not model.training and model.config.channels == (4, 8)
    data = fake_mnist()
    _, logits = infer(model, data["x_test"])
    assert float((logits.argmax(1) == data["y_test"]).mean()) == pytest.approx(
        metrics["test_accuracy"], abs=1e-6
    )


def test_run_is_deterministic(tmp_path: Path) -> None:
    save_npz(tmp_path / "mnist.npz", **fake_mnist(n_train=256))
    outs = []
    for name in ("a", "b"):
        run(
            tiny_params(epochs=1, shift=2),
            Runtime(device="cpu", num_threads=1),
            tmp_path / "mnist.npz",
            tmp_path / f"{name}.pt",
            tmp_path / f"{name}.json",
            tmp_path / f"{name}.csv",
        )
        outs.append(torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"])
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    # byte-identical checkpoints (no timings inside), so dvc sees an identical re-run as unchanged
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_bad_inputs_are_clear(tmp_path: Path) -> None:
    save_npz(tmp_path / "mnist.npz", **fake_mnist(n_train=32))
    with pytest.raises(UserError, match="fewer than batch_size 64"):
        run(
            tiny_params(),
            Runtime(device="cpu"),
            tmp_path / "mnist.npz",
            *(tmp_path / n for n in ("c.pt", "m.json", "c.csv")),
        )
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="unreadable"):
        load_classifier(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not found"):
        load_classifier(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "section, key",
    [
        ({"epoch": 3}, "mnist_classifier.epoch"),
        ({"lr": "fast"}, "mnist_classifier.lr"),
        ({"dropout": 1.5}, "mnist_classifier.dropout"),
        ({"channels": [16]}, "mnist_classifier.channels"),
        ({"batch_size": 0}, "mnist_classifier.batch_size"),
    ],
)
def test_malformed_params_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=rf"^{key}"):
        config.from_dict(Params, section, "mnist_classifier")


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed at step 10 with resume files every 4 steps: the rerun resumes at 8 and ends bit-identical."""
    import tagan.mnist.classifier as classifier
    import tagan.training as training

    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / "resume")
    save_npz(tmp_path / "mnist.npz", **fake_mnist(n_train=256))
    cfg = tiny_params(epochs=4, shift=1, checkpoint_every=4)  # 16 steps

    def outputs(name: str) -> list[Path]:
        return [tmp_path / "mnist.npz", *(tmp_path / f"{name}.{ext}" for ext in ("pt", "json", "csv"))]

    run(cfg, Runtime(device="cpu", num_threads=1), *outputs("straight"))
    real_batch_indices = classifier.batch_indices

    def dying(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
        if step == 10:
            raise KeyboardInterrupt
        return real_batch_indices(n, batch_size, step, seed)

    monkeypatch.setattr(classifier, "batch_indices", dying)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, Runtime(device="cpu", num_threads=1), *outputs("resumed"))
    assert list((tmp_path / "resume").glob("mnist_classifier-*.pt"))
    monkeypatch.setattr(classifier, "batch_indices", real_batch_indices)
    run(cfg, Runtime(device="cpu", num_threads=1), *outputs("resumed"))

    a = torch.load(tmp_path / "straight.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "straight.csv").read_text() == (tmp_path / "resumed.csv").read_text()
    assert not list((tmp_path / "resume").glob("*.pt"))  # finished runs leave no resume file
