"""MNIST CGAN: model shapes, maxout and projection maths, paper schedule, one step, seeds, stage outputs."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from test_mnist_classifier import fake_mnist  # tests/ is on sys.path

from pipeline.mnist_cgan import Params, run
from tagan import config, errors, files, gan, training, utils
from tagan.mnist import mnist_cgan
from tagan.mnist.mnist_cgan import MnistCGANTask, generate, load_generator, mode_seeking_loss
from tagan.models.mnist import ClassifierConfig, MnistClassifier
from tagan.models.mnist_cgan import Maxout, ModelConfig, build, sample_noise
from tagan.readers.mnist import load_npz

PAPER = {
    "model": dict(arch="mlp", discriminator="concat", z_dim=100, noise="uniform_sym", d_dropout=0.5, d_label_scale=10.0, spectral_norm=False),
    "optim": dict(optimizer="sgd", lr=0.1, lr_decay=1.00004, momentum=0.5, momentum_final=0.7,
                  momentum_ramp_steps=100, max_norm=1.9365),
    "train": dict(batch_size=16),
}  # fmt: skip


def tiny(**sections: dict) -> Params:
    """A config that trains in well under a second; `sections` update model / optim / train / top-level keys."""
    base: dict = {"model": dict(g_width=8, d_width=8), "optim": {},
                  "train": dict(batch_size=16, steps=2, checkpoint_every=0, log_every=1),
                  "eval_samples": 40, "select_samples": 20, "select_val_images": 16, "sigma_grid": [0.1, 0.2, 0.4]}  # fmt: skip
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return config.from_dict(Params, base, "mnist_cgan.test")


def fit(cfg: Params, data: tuple[torch.Tensor, torch.Tensor]) -> gan.FitResult:
    """The stage's training on tensors: build with the stage's seed, then the trainer."""
    task = MnistCGANTask(*data, cfg.model, cfg.train.mode_seeking)
    utils.seed_everything(cfg.seed)
    g, d = build(cfg.model)
    return gan.fit(task, g, d, cfg.train, cfg.optim, name="test", config_dict=config.to_dict(cfg),
                   seed=cfg.seed, noise_seed=cfg.seed + 1)  # fmt: skip


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("disc", ["concat", "projection"])
def test_shapes(arch: str, disc: str) -> None:
    cfg = ModelConfig(
        arch=arch, discriminator=disc, z_dim=12, g_width=8, d_width=8, g_dropout=0.5, d_dropout=0.5
    )
    g, d = build(cfg)
    z, y = torch.rand(5, 12), torch.arange(5)
    x = g(z, y)
    assert x.shape == (5, 1, 28, 28)
    assert d(torch.sigmoid(x), y).shape == (5,)


def test_paper_architecture_sizes() -> None:
    g, d = build(tiny(**PAPER).model)
    assert [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)] == [200, 1000, 1200, 784]
    maxouts = [(m.units, m.pieces) for m in d.modules() if isinstance(m, Maxout)]
    assert maxouts == [(240, 5), (50, 5), (240, 4)]
    assert d.out.out_features == 1


def test_maxout_is_max_over_pieces() -> None:
    torch.manual_seed(0)
    m = Maxout(3, units=2, pieces=4)
    x = torch.randn(6, 3)
    lin = x @ m.linear.weight.T + m.linear.bias  # (6, 8): unit u's pieces are columns 4u .. 4u+3
    expected = torch.stack([lin[:, 0:4].max(1).values, lin[:, 4:8].max(1).values], dim=1)
    torch.testing.assert_close(m(x), expected)


def test_projection_discriminator_is_psi_plus_embedding_dot_phi() -> None:
    torch.manual_seed(0)
    d = build(ModelConfig(arch="conv", discriminator="projection", d_width=4))[1].eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 7, 7])
    phi = d.phi(x * 2 - 1)  # (3, 16)
    expected = d.psi(phi).squeeze(1) + (d.embed(y) * phi).sum(1)
    torch.testing.assert_close(d(x, y), expected)
    # the label enters only through the inner product: swapping labels changes exactly that term
    diff = d(x, torch.tensor([2, 2, 2])) - d(x, y)
    torch.testing.assert_close(
        diff, (d.embed(torch.tensor([2, 2, 2])) * phi).sum(1) - (d.embed(y) * phi).sum(1)
    )


def test_paper_schedule() -> None:
    optim = tiny(**PAPER).optim
    assert gan.optim.learning_rates(optim, 0) == (0.1, 0.1) and gan.optim.momentum_at(optim, 0) == 0.5
    lr, _ = gan.optim.learning_rates(optim, 50)
    assert lr == pytest.approx(0.1 / 1.00004**50) and gan.optim.momentum_at(optim, 50) == pytest.approx(0.6)
    assert gan.optim.learning_rates(optim, 10**6)[0] == pytest.approx(1e-6)  # floor ...
    assert gan.optim.momentum_at(optim, 10**6) == pytest.approx(0.7)  # ... and saturation


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    mnist = fake_mnist(n_train=64, n_eval=32)
    return torch.from_numpy(mnist["x_train"] / 255.0).float().unsqueeze(1), torch.from_numpy(
        mnist["y_train"]
    ).long()


@pytest.mark.parametrize("preset", ["paper", "strong"])
def test_one_step_changes_both_networks(preset: str, data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    cfg = tiny(**PAPER) if preset == "paper" else tiny()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=1))
    utils.seed_everything(cfg.seed)
    g0, d0 = build(cfg.model)
    out = fit(cfg, data)
    rows = out.rows
    (row,) = rows
    if (
        preset == "paper"
    ):  # an untrained MLP D is at chance: its logits are near 0 on real and fake digits alike
        assert row["d_loss"] == pytest.approx(2 * math.log(2), abs=0.02)
        assert row["g_loss"] == pytest.approx(math.log(2), abs=0.01)
    for before, after in ((g0, out.g), (d0, out.d)):
        changed = [
            not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values())
        ]
        assert any(changed)


def test_same_seed_same_generator(data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    cfg = tiny(train={"steps": 3, "ema_decay": 0.9})
    runs = [fit(cfg, data).g for _ in range(2)]
    labels = torch.arange(10)
    torch.testing.assert_close(
        generate(runs[0], cfg.model, labels, 5), generate(runs[1], cfg.model, labels, 5), rtol=0, atol=0
    )
    other = fit(dataclasses.replace(cfg, seed=1), data).g
    assert not torch.equal(generate(other, cfg.model, labels, 5), generate(runs[0], cfg.model, labels, 5))


def test_bad_params_name_the_key() -> None:
    with pytest.raises(config.ParamsError, match=r"^mnist_cgan.test.model.discriminator: must be one of"):
        tiny(model={"discriminator": "dot"})
    with pytest.raises(config.ParamsError, match=r"^mnist_cgan.test.eval_samples"):
        tiny(eval_samples=15)
    with pytest.raises(config.ParamsError, match=r"^mnist_cgan.test.optim.lr_decay"):
        tiny(optim={"lr_decay": 0.5})
    with pytest.raises(config.ParamsError, match=r"^mnist_cgan.test.train.steps"):
        tiny(train={"steps": 0})
    with pytest.raises(config.ParamsError, match=r"^mnist_cgan.test.model.sample_scale"):
        tiny(model={"sample_scale": 0.5})  # chosen on validation from sample_scales


def write_fixtures(root: Path) -> tuple[Path, Path]:
    """A tiny fake MNIST npz and an untrained classifier checkpoint."""
    mnist = fake_mnist(n_train=64, n_eval=32)
    files.save_npz(root / "mnist.npz", **mnist)
    torch.manual_seed(0)
    ccfg = ClassifierConfig(channels=(4, 8), hidden=8)
    utils.save_checkpoint(
        root / "clf.pt", {"model": dataclasses.asdict(ccfg)}, MnistClassifier(config=ccfg).state_dict()
    )
    return root / "mnist.npz", root / "clf.pt"


@pytest.mark.parametrize("preset", ["paper", "strong"])
def test_stage_run_writes_all_outputs(preset: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / "resume")
    npz, clf = write_fixtures(tmp_path)
    base = tiny(**PAPER) if preset == "paper" else tiny(train={"ema_decay": 0.5}, sample_scales=[0.5, 1.0])
    train = dataclasses.replace(base.train, steps=4, select_every=2, checkpoint_every=2)
    cfg = dataclasses.replace(base, train=train)
    out = {
        k: tmp_path / "out" / f"{k}.{ext}"
        for k, ext in [("model", "pt"), ("metrics", "json"), ("plot", "csv"), ("png", "png")]
    }
    # Selection runs at steps 2 and 4 with the real Parzen scorer; its scores are replaced by made-up ones in
    # which step 2 (not the last step, the default) wins, and the weights scored at each step are recorded.
    made_up, scored = iter([-5.0, -9.0]), []
    real_selector = mnist_cgan.parzen_selector

    def selector(*args, **kwargs):
        score = real_selector(*args, **kwargs)

        def scripted(g: torch.nn.Module, mcfg: ModelConfig | None = None) -> float:
            if mcfg is not None:  # choosing the noise spread after training: the real score
                return score(g, mcfg)
            score(g)  # the real scorer still runs on G
            scored.append(copy.deepcopy(g.state_dict()))
            return next(made_up)

        return scripted

    monkeypatch.setattr(mnist_cgan, "parzen_selector", selector)
    metrics = run(
        cfg, config.Runtime(device="cpu"), npz, clf, out["model"], out["metrics"], out["plot"], out["png"]
    )
    assert all(p.exists() for p in out.values())
    assert files.read_json(out["metrics"]) == metrics
    # the reported test numbers are the saved G's: evaluating the checkpoint again gives them exactly
    g_saved, mcfg_saved = load_generator(out["model"])
    again = mnist_cgan.evaluate(g_saved, mcfg_saved, load_npz(npz), clf, samples=cfg.eval_samples,
                                sigma_grid=cfg.sigma_grid, seed=cfg.seed, device=torch.device("cpu"))  # fmt: skip
    headline = {"parzen_ll", "parzen_se", "parzen_sigma", "fid", "fid_real_floor", "conditional_accuracy"}
    assert headline <= set(again) and {k: metrics[k] for k in again if k != "eval_total_seconds"} == {
        k: v for k, v in again.items() if k != "eval_total_seconds"
    }
    assert metrics["parzen_sigma"] in cfg.sigma_grid
    assert (
        metrics["fid_real_floor"] < metrics["fid"]
    )  # real digits sit closer to the test set than 4 steps' G
    assert len(scored) == 2 and (metrics["selected_step"], metrics["selected_val_parzen"]) == (2, -5.0)
    saved = utils.load_checkpoint(out["model"])
    assert saved["selected_step"] == 2
    assert saved["state_dict"].keys() == scored[0].keys()
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in scored[0].items())  # step 2's weights
    assert not all(torch.equal(scored[1][k], v) for k, v in scored[0].items())  # not the last step's
    assert out["plot"].read_text().splitlines()[0] == "step,d_loss,g_loss,d_real,d_fake,lr"
    assert utils.load_checkpoint(out["model"])["config"]["params"] == config.to_dict(cfg)
    from PIL import Image

    assert Image.open(out["png"]).size == (10 * 30 + 2, 10 * 30 + 2)  # one row per digit, 10 columns
    g, mcfg = load_generator(out["model"])
    assert mcfg.arch == cfg.model.arch and generate(g, mcfg, torch.arange(3), 0).shape == (3, 28, 28)
    # the noise spread chosen on validation travels in the checkpoint
    assert mcfg.sample_scale == metrics["sample_scale"] in cfg.sample_scales
    if preset == "strong":
        scores = {s: metrics[f"val_parzen_at_scale_{s:g}"] for s in cfg.sample_scales}
        assert max(scores, key=lambda s: scores[s]) == mcfg.sample_scale
        # a truncated headline always comes with the same weights' untruncated numbers beside it
        assert ("untruncated_parzen_ll" in metrics) == (mcfg.sample_scale != 1.0)
    assert not list((tmp_path / "resume").glob("*.pt"))  # resume file removed after a finished run


def test_missing_classifier_is_a_user_error(tmp_path: Path) -> None:
    npz, _ = write_fixtures(tmp_path)
    with pytest.raises(errors.UserError, match="dvc repro mnist_classifier"):
        run(
            tiny(),
            config.Runtime(device="cpu"),
            npz,
            tmp_path / "nope.pt",
            *(tmp_path / f"o{i}" for i in range(4)),
        )


def test_sample_scale_shrinks_noise_around_its_mean() -> None:
    for noise, mean in (("normal", 0.0), ("uniform", 0.5), ("uniform_sym", 0.0)):
        cfg = ModelConfig(noise=noise, z_dim=4000)
        z1 = sample_noise(3, cfg, torch.Generator().manual_seed(0))
        z_half = sample_noise(3, cfg, torch.Generator().manual_seed(0), scale=0.5)
        torch.testing.assert_close(z_half - mean, (z1 - mean) * 0.5)


def test_mode_seeking_term_rewards_distinct_images_for_distinct_noise() -> None:
    z = torch.randn(8, 16)
    same = torch.rand(4, 1, 28, 28).repeat(2, 1, 1, 1)  # pairs (i, 4 + i) identical: collapsed G
    spread = torch.rand(8, 1, 28, 28)
    assert mode_seeking_loss(spread, z) < mode_seeking_loss(same, z)
    assert mode_seeking_loss(same, z) > 1e4  # 1 / eps


def test_mode_seeking_step_uses_label_pairs(data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path)
    seen: list[torch.Tensor] = []
    cfg = tiny(train={"steps": 1, "mode_seeking": 1.0})
    task = MnistCGANTask(*data, cfg.model, cfg.train.mode_seeking)
    g, d = build(cfg.model)
    g.register_forward_pre_hook(lambda _m, args: seen.append(args[1].clone()))
    rows = gan.fit(task, g, d, cfg.train, cfg.optim, name="t", config_dict={}, seed=0).rows
    y = seen[0]
    assert len(y) == cfg.train.batch_size and torch.equal(
        y[:8], y[8:]
    )  # second half repeats the first's labels
    assert math.isfinite(rows[0]["g_loss"])
    with pytest.raises(config.ParamsError, match="train.mode_seeking"):
        tiny(train={"mode_seeking": -1.0})
    with pytest.raises(config.ParamsError, match="sample_scales"):
        tiny(sample_scales=[])
