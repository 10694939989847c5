"""Tag CGAN networks (shapes, maxout, heads) and the training stage (one step, seed determinism, tiny run)."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch

from pipeline.tag_cgan import Params, run
from pipeline.tag_embeddings import Params as EmbParams
from pipeline.tag_embeddings import run as embed
from tagan.config import ParamsError, Runtime, from_dict
from tagan.models.layers import InputDropout
from tagan.models.tag_cgan import (
    DataSizes,
    Maxout,
    TagCGANConfig,
    build,
    load_generator,
    sample,
    sample_noise,
)
from tagan.tagging import tag_cgan as tag_cgan_lib
from tagan.tagging.index import TagIndex, read_tag_data
from tagan.tagging.tag_cgan import TagCGANTask, TagTrainConfig, training_pairs, val_p_at_5
from tagan.utils import load_checkpoint
from tests.tag_fixtures import TINY_TAG_CGAN, make_tag_data, tiny_tag_cgan_params

TINY = TINY_TAG_CGAN


@pytest.mark.parametrize("discriminator", ["concat", "projection"])
@pytest.mark.parametrize("output", ["linear", "vocab"])
def test_shapes(discriminator, output):
    cfg = TagCGANConfig(output=output, discriminator=discriminator, **TINY)
    g, d = build(cfg, DataSizes(feature_dim=10, tag_dim=5, vocab_size=7))
    x, z = torch.randn(3, 10), torch.randn(3, 4)
    t = g(z, x)
    assert t.shape == (3, 5)
    assert d(t, x).shape == (3,)
    vec, logits = g(z, x, return_logits=True)
    assert logits.shape == ((3, 7) if output == "vocab" else (3, 5))


def test_vocab_head_mixes_vocabulary_vectors():
    torch.manual_seed(0)  # the share of near one-hot rows depends on the init and the inputs
    cfg = TagCGANConfig(output="vocab", temperature=0.01, **TINY)
    g, _ = build(cfg, DataSizes(feature_dim=10, tag_dim=3, vocab_size=3))
    g.vocab_vectors.copy_(torch.eye(3))
    out = g.eval()(torch.randn(50, 4), torch.randn(50, 10))
    assert torch.allclose(out.sum(1), torch.ones(50), atol=1e-4)  # convex mixture of one-hot rows
    assert (out.max(1).values > 0.9).float().mean() > 0.9  # low temperature: nearly one word each


def test_maxout_takes_max_over_pieces():
    m = Maxout(1, units=2, pieces=3)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[1.0], [-1.0], [2.0], [0.5], [3.0], [-2.0]]))
        m.linear.bias.zero_()
    assert m(torch.tensor([[1.0]])).tolist() == [[2.0, 3.0]]
    assert m(torch.tensor([[-1.0]])).tolist() == [[1.0, 2.0]]


def test_sample_is_deterministic_in_seed():
    torch.manual_seed(0)
    g, _ = build(TagCGANConfig(**TINY), DataSizes(feature_dim=10, tag_dim=5))
    x = torch.randn(4, 10)
    a, b, c = sample(g.eval(), x, 6, seed=1), sample(g, x, 6, seed=1), sample(g, x, 6, seed=2)
    assert a.shape == (4, 6, 5) and torch.equal(a, b) and not torch.equal(a, c)


def test_input_dropout_scales_kept_inputs_and_is_identity_in_eval():
    torch.manual_seed(0)  # the masks
    drop = InputDropout(0.5, scale=1.0)
    x = torch.ones(1000, 50)
    y = drop(x)
    assert set(y.unique().tolist()) == {0.0, 1.0} and 0.45 < y.mean().item() < 0.55  # no rescaling
    assert set(InputDropout(0.2, scale=1.25)(x).unique().tolist()) == {0.0, 1.25}
    assert torch.equal(drop.eval()(x), x)


def test_pylearn2_dropout_drops_every_layers_input_and_keeps_state_dict_keys():
    torch.manual_seed(0)  # the dropout masks below
    sizes = DataSizes(feature_dim=10, tag_dim=5)
    torch_style = TagCGANConfig(**TINY)
    pl2 = TagCGANConfig(
        **TINY, dropout_style="pylearn2", g_dropout=0.5, g_dropout_scale=1.0, d_input_dropout=0.2
    )
    (g, d), (g2, d2) = build(torch_style, sizes), build(pl2, sizes)
    assert g.state_dict().keys() == g2.state_dict().keys() and d.state_dict().keys() == d2.state_dict().keys()
    drops = {n: (m.p, m.scale) for n, m in g2.named_modules() if isinstance(m, InputDropout)}
    assert drops == {
        "input_drop": (0.5, 1.0),
        "noise_drop": (0.5, 1.0),
        "cond.2": (0.5, 1.0),
    }  # z, x; joint input
    drops = {n: (m.p, m.scale) for n, m in d2.named_modules() if isinstance(m, InputDropout)}
    assert drops == {"input_drop": (0.2, 1.25), "joint_drop": (0.5, 2.0), "drop": (0.5, 2.0)}
    assert g.cond_hidden_is_fixed and not g2.cond_hidden_is_fixed and g2.eval().cond_hidden_is_fixed
    # eval: no dropout anywhere, so the pylearn2 G computes what the same weights compute in torch style
    g.load_state_dict(g2.state_dict())
    x, z = torch.randn(3, 10), torch.randn(3, 4)
    assert torch.equal(g.eval()(z, x), g2.eval()(z, x))
    # train: G(z, x) varies with the dropout masks even for fixed z; g_dropout 0 makes it deterministic
    g2.train()
    assert not torch.equal(g2(z, x), g2(z, x))
    g3, _ = build(TagCGANConfig(**TINY, dropout_style="pylearn2", g_dropout=0.0), sizes)
    assert torch.equal(g3.train()(z, x), g3(z, x))


def test_uniform_noise_and_init_ranges():
    torch.manual_seed(0)  # the init's extremes depend on the draw
    z = sample_noise(20000, TagCGANConfig(**TINY, noise="uniform"))
    assert z.abs().max() <= 3**0.5 and abs(z.var().item() - 1) < 0.02 and abs(z.mean().item()) < 0.02
    g, d = build(TagCGANConfig(**TINY, g_init_range=0.05, d_init_range=0.005), DataSizes(10, 5))
    assert 0.04 < g.noise[0].weight.abs().max() <= 0.05 and 0.004 < d.out.weight.abs().max() <= 0.005
    assert g.noise[0].bias.abs().max() == 0 and d.maxout.linear.bias.abs().max() == 0


def test_params_reject_bad_values():
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.train.aux_weight: needs model.output: vocab"):
        from_dict(Params, {"train": {"aux_weight": 1.0}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.train.loss"):
        from_dict(Params, {"train": {"loss": "wasserstein"}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.model.noise_dim: must be > 0"):
        from_dict(Params, {"model": {"noise_dim": 0}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.model.feature_dim: unknown key"):
        from_dict(Params, {"model": {"feature_dim": 1280}}, "tag_cgan.paper")  # comes from the data
    with pytest.raises(
        ParamsError, match=r"^tag_cgan.paper.model.d_input_dropout: needs dropout_style: pylearn2"
    ):
        from_dict(Params, {"model": {"d_input_dropout": 0.2}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.train.tag_scale: needs model.output: linear"):
        from_dict(Params, {"model": {"output": "vocab"}, "train": {"tag_scale": 14.0}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.model.noise"):
        from_dict(Params, {"model": {"noise": "spherical"}}, "tag_cgan.paper")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tags")
    paths = make_tag_data(root)
    embed(EmbParams(dim=8, epochs=5), Runtime(), paths["items"], paths["vocab"], root / "emb")
    return {**paths, "emb": root / "emb", "root": root}


def tiny_run(tiny_data, name: str, tmp: Path, **sections) -> dict:
    cfg = from_dict(Params, tiny_tag_cgan_params(**sections), "tag_cgan.test")
    return run(
        cfg,
        Runtime(num_threads=1),
        name,
        tiny_data["items"],
        tiny_data["vocab"],
        tiny_data["features"],
        tiny_data["emb"],
        tmp / f"{name}.pt",
        tmp / f"{name}.csv",
    )


def test_tiny_run_writes_checkpoint_with_config(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    m = tiny_run(tiny_data, "paper", tmp_path)
    assert m["steps"] == 6
    ckpt = load_checkpoint(tmp_path / "paper.pt")
    g = load_generator(ckpt)
    assert g.sizes.tag_dim == 8 and ckpt["config"]["preset"] == "paper" and len(ckpt["config"]["vocab"]) == 12
    assert (tmp_path / "paper.csv").read_text().startswith("step,d_loss,g_loss")
    # val_sample_hit: share of the saved G's val samples (20 per image, seed 1) whose nearest word is a true tag
    data, index = (
        read_tag_data(*(tiny_data[k] for k in ("items", "vocab", "features"))),
        TagIndex.load(tiny_data["emb"]),
    )
    val = data.rows("val")
    generated = sample(g, torch.from_numpy(data.features[val]), 20, seed=1).numpy()  # (B, 20, D)
    _, nearest = index.search(generated.reshape(-1, index.dim), 1)
    hits = [index.words[j] in data.tags[r] for r, row in zip(val, nearest.reshape(len(val), 20)) for j in row]
    assert m["val_sample_hit"] == pytest.approx(sum(hits) / len(hits))


def test_seed_determinism_and_strong_options(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    kw = dict(
        model={"output": "vocab", "discriminator": "projection"},
        optim={"optimizer": "adam", "lr": 1e-3, "lr_d": 1e-3},
        train={"aux_weight": 1.0, "loss": "hinge", "mismatch": 0.5},
    )
    tiny_run(tiny_data, "a", tmp_path, **kw)
    tiny_run(tiny_data, "b", tmp_path, **kw)
    tiny_run(tiny_data, "c", tmp_path, **kw, seed=1)
    sa, sb, sc = (load_checkpoint(tmp_path / f"{n}.pt")["state_dict"]["generator"] for n in "abc")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_model_selection_keeps_the_best_val_step(tiny_data, tmp_path, monkeypatch):
    """Selection at steps 2, 4, 6 scores the real val P@5, then reports made-up scores in which step 4 wins: the
    stage keeps step 4, saves exactly the weights scored there, and the real score of those weights is theirs."""
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    kw = dict(
        model={"output": "vocab"}, optim={"optimizer": "adam", "lr": 1e-2, "lr_d": 1e-3}, select_samples=5
    )
    real_val_p_at_5, made_up, scored = tag_cgan_lib.val_p_at_5, iter([0.2, 0.7, 0.4]), []

    def scripted(g, *args, **kwargs):
        scored.append((copy.deepcopy(g.state_dict()), real_val_p_at_5(g, *args, **kwargs)))
        return next(made_up)

    monkeypatch.setattr(tag_cgan_lib, "val_p_at_5", scripted)
    m = tiny_run(tiny_data, "sel", tmp_path, train={"aux_weight": 1.0, "select_every": 2}, **kw)
    monkeypatch.setattr(tag_cgan_lib, "val_p_at_5", real_val_p_at_5)
    assert len(scored) == 3 and (m["selected_step"], m["selected_val_p_at_5"]) == (4, 0.7)
    kept, kept_real_score = scored[1]
    saved = load_checkpoint(tmp_path / "sel.pt")["state_dict"]["generator"]
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], v) for k, v in kept.items())
    assert not all(torch.equal(scored[2][0][k], v) for k, v in kept.items())  # the last step's differ
    g = load_generator(load_checkpoint(tmp_path / "sel.pt"))
    assert val_p_at_5(g, read_tag_data(*(tiny_data[k] for k in ("items", "vocab", "features"))),
                      TagIndex.load(tiny_data["emb"]), 5) == pytest.approx(kept_real_score)  # fmt: skip
    plain = tiny_run(tiny_data, "last", tmp_path, train={"aux_weight": 1.0}, **kw)
    assert plain["selected_step"] == 6  # no selection: the last step


def test_tiny_run_with_pylearn2_dropout_uniform_noise_and_irange_init(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    model = {"dropout_style": "pylearn2", "g_dropout": 0.5, "g_dropout_scale": 1.0, "d_input_dropout": 0.2,
             "noise": "uniform", "g_init_range": 0.05, "d_init_range": 0.005}  # fmt: skip
    m = tiny_run(tiny_data, "pl2", tmp_path, model=model)
    rows = list(csv.DictReader((tmp_path / "pl2.csv").open()))
    assert m["steps"] == 6 and [int(r["step"]) for r in rows] == [2, 4, 6]
    assert math.isfinite(m["final_d_loss"]) and m["final_d_loss"] == pytest.approx(float(rows[-1]["d_loss"]))
    again = tiny_run(tiny_data, "pl2_again", tmp_path, model=model)  # the dropout masks and noise are seeded
    assert (tmp_path / "pl2_again.csv").read_text() == (tmp_path / "pl2.csv").read_text()
    assert again["val_sample_hit"] == m["val_sample_hit"]
    g = load_generator(load_checkpoint(tmp_path / "pl2.pt"))
    assert g.cfg.noise == "uniform" and isinstance(g.input_drop, InputDropout)


def test_tag_scale_scales_the_real_tag_vectors_d_sees(tiny_data):
    data = read_tag_data(*(tiny_data[k] for k in ("items", "vocab", "features")))
    index = TagIndex.load(tiny_data["emb"])
    rows, tags = training_pairs(data, index)
    scaled = TagTrainConfig(tag_scale=3.0)
    task = TagCGANTask.from_data(data, index, rows, tags, 4, scaled, torch.device("cpu"))
    batch = task.batch(torch.arange(5))
    assert torch.allclose(batch.real.norm(dim=1), torch.full((5,), 3.0))  # unit word vectors times 3


def test_selection_can_score_with_the_papers_neighbour_votes(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    m = tiny_run(tiny_data, "nb", tmp_path, train={"select_every": 3}, select_samples=5, select_neighbors=3)
    g = load_generator(load_checkpoint(tmp_path / "nb.pt"))
    data = read_tag_data(*(tiny_data[k] for k in ("items", "vocab", "features")))
    index = TagIndex.load(tiny_data["emb"])
    assert val_p_at_5(g, data, index, 5, neighbors=3) == pytest.approx(m["selected_val_p_at_5"])
