"""The GAN trainer (tagan.gan): losses, schedules, EMA, max-norm, model selection, divergence, resume, progress."""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from toy_gan import N_CLASSES, X_DIM, ToyTask, build  # tests/ is on sys.path

from tagan import errors, gan, training, utils
from tagan.config import ParamsError


@pytest.fixture(autouse=True)
def resume_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(training, "RESUME_DIR", tmp_path / ".resume")
    return tmp_path / ".resume"


def toy_task() -> ToyTask:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, X_DIM, generator=gen)  # (N, X)
    y = torch.randint(0, N_CLASSES, (64,), generator=gen)  # (N,)
    return ToyTask(x, nn.functional.one_hot(y, N_CLASSES).float())


def toy_fit(
    task: gan.GANTask | None = None, select=None, width: int = 16, **train_kw
) -> tuple[gan.FitResult, nn.Module]:
    """fit() on the toy GAN; returns (result, the trained G itself)."""
    utils.seed_everything(0)
    g, d = build(width)
    optim_kw = {
        k: train_kw.pop(k) for k in list(train_kw) if k in {f for f in gan.OptimConfig.__dataclass_fields__}
    }
    train = gan.TrainConfig(
        **{"batch_size": 16, "steps": 4, "log_every": 2, "checkpoint_every": 0, **train_kw}
    )
    optim = gan.OptimConfig(**{"lr": 1e-2, **optim_kw})
    out = gan.fit(task or toy_task(), g, d, train, optim, name="toy", config_dict={"w": width}, seed=0,
                  noise_seed=1, select=select)  # fmt: skip
    return out, g


def digest(*modules: nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- losses, schedules, EMA, max-norm --------------------------------------------------------------


def test_bce_losses_are_the_non_saturating_gan_losses_on_logits() -> None:
    zero = torch.zeros(3)
    assert gan.optim.d_loss("bce", zero, zero).item() == pytest.approx(2 * math.log(2))
    assert gan.optim.g_loss("bce", zero).item() == pytest.approx(math.log(2))
    real, fake = torch.tensor([3.0, -1.0]), torch.tensor([0.5, -2.0])
    expected = nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()
    torch.testing.assert_close(gan.optim.d_loss("bce", real, fake), expected)
    # non-saturating: G still gets a gradient when D confidently rejects its samples
    logits = torch.tensor([-20.0], requires_grad=True)
    gan.optim.g_loss("bce", logits).backward()
    assert logits.grad is not None and logits.grad.item() == pytest.approx(-1.0, abs=1e-6)


def test_hinge_losses() -> None:
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    assert gan.optim.d_loss("hinge", real, fake).item() == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    assert gan.optim.g_loss("hinge", fake).item() == pytest.approx(0.75)
    assert gan.optim.fake_term("hinge", fake).item() == pytest.approx(0.75)


def test_schedules() -> None:
    constant = gan.OptimConfig(lr=0.5, lr_d=0.25)
    assert (
        gan.optim.learning_rates(constant, 10**6) == (0.5, 0.25)
        and gan.optim.momentum_at(constant, 99) == 0.5
    )
    paper = gan.OptimConfig(
        lr=0.1, lr_decay=1.1, lr_min=0.01, momentum=0.5, momentum_final=0.7, momentum_ramp_steps=4
    )
    assert gan.optim.learning_rates(paper, 2) == (pytest.approx(0.1 / 1.21),) * 2
    assert gan.optim.learning_rates(paper, 100) == (0.01, 0.01)  # the floor
    assert [gan.optim.momentum_at(paper, s) for s in (0, 2, 4, 8)] == pytest.approx([0.5, 0.6, 0.7, 0.7])


def test_bad_optim_and_train_values_name_their_key() -> None:
    with pytest.raises(ParamsError, match="^lr_decay: must be >= 1"):
        gan.OptimConfig(lr_decay=0.5)
    with pytest.raises(ParamsError, match="^lr_d: must be > 0"):
        gan.OptimConfig(lr_d=0.0)
    with pytest.raises(ParamsError, match="^steps: must be > 0"):
        gan.TrainConfig(steps=0)
    with pytest.raises(ParamsError, match="^ema_decay"):
        gan.TrainConfig(ema_decay=1.0)


def test_ema_update_is_a_lerp_of_parameters_and_copies_buffers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(2.0)
    expected = [torch.lerp(e, p, 0.25) for e, p in zip(ema.parameters(), model.parameters())]
    gan.optim.ema_update(ema, model, 0.75)
    assert all(torch.equal(e, x) for e, x in zip(ema.parameters(), expected))
    assert torch.equal(ema[1].running_mean, model[1].running_mean)
    assert [gan.optim.ema_decay_at(0.999, s) for s in (0, 90)] == [0.1, 0.91]  # warm-up, then ...
    assert gan.optim.ema_decay_at(0.999, 10**6) == 0.999  # ... the configured decay


def test_max_norm_caps_every_unit_of_the_paper_discriminator() -> None:
    from tagan.models.mnist_cgan import ModelConfig
    from tagan.models.mnist_cgan import build as build_cgan

    torch.manual_seed(0)
    _, d = build_cgan(
        ModelConfig(
            arch="mlp", discriminator="concat", z_dim=100, noise="uniform", g_dropout=0.5, d_dropout=0.5
        )
    )
    weights = gan.optim.max_norm_weights(d)
    assert len(weights) == 4  # three maxout layers' linear maps and the output layer
    with torch.no_grad():
        weights[0].mul_(1000)
    small = weights[-1].clone()  # already under the cap: untouched
    gan.optim.apply_max_norm(weights, 1.9365)
    assert all(w.norm(dim=1).max() <= 1.9365 + 1e-5 for w in weights)
    assert torch.equal(weights[-1], small)


# --- the training loop -----------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["bce", "hinge"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_step_of_each_loss_and_optimiser_trains_both_networks(loss: str, optimizer: str) -> None:
    utils.seed_everything(0)
    g0, d0 = build(16)
    out, g = toy_fit(steps=1, log_every=1, loss=loss, optimizer=optimizer, momentum_final=0.9)
    assert len(out.rows) == 1 and set(out.rows[0]) == {"step", "d_loss", "g_loss", "d_real", "d_fake", "lr"}
    assert all(math.isfinite(v) for v in out.rows[0].values())
    assert digest(g0) != digest(g) and digest(d0) != digest(out.d)
    assert out.g is g and not out.g.training  # no EMA, no selection: G itself, in eval mode


def test_ema_sampler_follows_g_with_the_warmed_up_decay() -> None:
    utils.seed_everything(0)
    g0, _ = build(16)
    out, g = toy_fit(steps=1, ema_decay=0.99)
    assert out.g is not g
    for e, p0, p in zip(out.g.parameters(), g0.parameters(), g.parameters()):
        assert torch.equal(e, torch.lerp(p0, p, 1 - 0.1))  # step 0: decay min(0.99, 1/10)


def test_model_selection_keeps_the_best_scoring_step() -> None:
    scores, states = iter([1.0, 3.0, 2.0]), []

    def select(sampler: nn.Module) -> float:
        states.append(copy.deepcopy(sampler.state_dict()))
        return next(scores)

    out, g = toy_fit(steps=6, select_every=2, select=select)
    assert (out.selected_step, out.selected_score) == (4, 3.0)
    assert len(states) == 3 and all(torch.equal(out.g.state_dict()[k], v) for k, v in states[1].items())
    assert digest(out.g) != digest(g)  # the last step's G is not the kept one


def test_max_norm_holds_after_training() -> None:
    out, g = toy_fit(steps=3, max_norm=0.3)
    assert all(
        w.norm(dim=1).max() <= 0.3 + 1e-5
        for w in gan.optim.max_norm_weights(g) + gan.optim.max_norm_weights(out.d)
    )


class DivergingTask(ToyTask):
    """The toy whose G loss turns NaN at its 3rd step."""

    calls = 0

    def g_extra(self, fake: gan.Fake, batch: gan.Batch) -> torch.Tensor | None:
        self.calls += 1
        return torch.tensor(float("nan")) if self.calls == 3 else None


def test_divergence_stops_and_keeps_the_selected_model_or_fails_clearly() -> None:
    t = toy_task()
    out, _ = toy_fit(DivergingTask(t.x, t.onehot), steps=6, select_every=2, select=lambda g: 1.0)
    assert (out.diverged_at_step, out.selected_step) == (3, 2)
    assert all(torch.isfinite(p).all() for p in out.g.parameters())
    with pytest.raises(errors.UserError, match="diverged at step 3 before any model selection"):
        toy_fit(DivergingTask(t.x, t.onehot), steps=6)


def test_resume_after_a_crash_is_bit_identical(monkeypatch: pytest.MonkeyPatch, resume_dir: Path) -> None:
    kw = dict(steps=12, checkpoint_every=4, log_every=3, ema_decay=0.9, select_every=5, lr_decay=1.01)
    select = lambda g: -float(next(g.parameters()).abs().mean())  # noqa: E731
    straight, g = toy_fit(select=select, **kw)
    expected = (digest(g, straight.g, straight.d), straight.rows, straight.selected_step)
    straight.finish()

    save = training.Checkpointer.save

    def crash_after_step_8(self: training.Checkpointer, step: int, *args, **kwargs) -> None:
        save(self, step, *args, **kwargs)
        if step == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Checkpointer, "save", crash_after_step_8)
    with pytest.raises(KeyboardInterrupt):
        toy_fit(select=select, **kw)
    monkeypatch.setattr(training.Checkpointer, "save", save)
    assert len(list(resume_dir.glob("*.pt"))) == 1
    torch.manual_seed(123)  # the resume file restores the RNGs, whatever they were
    resumed, g = toy_fit(select=select, **kw)
    assert (digest(g, resumed.g, resumed.d), resumed.rows, resumed.selected_step) == expected


def test_log_line_per_row_without_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tagan.gan"):
        toy_fit(steps=4, log_every=2)
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == ["toy step 2/4", "toy step 4/4"]


class DtypeRecordingTask(ToyTask):
    """The toy that records the dtype of G's samples and D's logits in every step."""

    def __init__(self, x: torch.Tensor, onehot: torch.Tensor) -> None:
        super().__init__(x, onehot)
        self.g_dtypes: set[torch.dtype] = set()
        self.d_dtypes: set[torch.dtype] = set()

    def generate(self, g: nn.Module, batch: gan.Batch) -> gan.Fake:
        fake = super().generate(g, batch)
        self.g_dtypes.add(fake.samples.dtype)
        return fake

    def discriminate(self, d: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        logits = super().discriminate(d, x, cond)
        self.d_dtypes.add(logits.dtype)
        return logits


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_bf16_precision_runs_g_and_d_under_bf16_autocast(precision: str, dtype: torch.dtype) -> None:
    """bf16: both networks compute in bfloat16 (autocast) while their weights stay float32; fp32: no bf16."""
    t = toy_task()
    task = DtypeRecordingTask(t.x, t.onehot)
    out, g = toy_fit(task, steps=2, log_every=1, precision=precision)
    assert task.g_dtypes == {dtype} and task.d_dtypes == {dtype}
    assert all(p.dtype == torch.float32 for p in [*g.parameters(), *out.d.parameters()])
    assert len(out.rows) == 2 and all(
        math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in out.rows
    )
