"""Tag CGAN networks (shapes, maxout, heads) and the training stage (one step, seed determinism, tiny run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.tag_cgan import Params, run
from pipeline.tag_embeddings import Params as EmbParams
from pipeline.tag_embeddings import run as embed
from tagan.config import ParamsError, Runtime, from_dict
from tagan.models.tag_cgan import DataSizes, Maxout, TagCGANConfig, build, load_generator, sample
from tagan.tag_gan import val_p_at_5
from tagan.tagging import TagIndex, read_tag_data
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
    g, _ = build(TagCGANConfig(**TINY), DataSizes(feature_dim=10, tag_dim=5))
    x = torch.randn(4, 10)
    a, b, c = sample(g.eval(), x, 6, seed=1), sample(g, x, 6, seed=1), sample(g, x, 6, seed=2)
    assert a.shape == (4, 6, 5) and torch.equal(a, b) and not torch.equal(a, c)


def test_params_reject_bad_values():
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.train.aux_weight: needs model.output: vocab"):
        from_dict(Params, {"train": {"aux_weight": 1.0}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.train.loss"):
        from_dict(Params, {"train": {"loss": "wasserstein"}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.model.noise_dim: must be > 0"):
        from_dict(Params, {"model": {"noise_dim": 0}}, "tag_cgan.paper")
    with pytest.raises(ParamsError, match=r"^tag_cgan.paper.model.feature_dim: unknown key"):
        from_dict(Params, {"model": {"feature_dim": 1280}}, "tag_cgan.paper")  # comes from the data


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
    monkeypatch.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
    kw = dict(
        model={"output": "vocab"}, optim={"optimizer": "adam", "lr": 1e-2, "lr_d": 1e-3}, select_samples=5
    )
    m = tiny_run(tiny_data, "sel", tmp_path, train={"aux_weight": 1.0, "select_every": 2}, **kw)
    assert m["selected_step"] in (2, 4, 6) and 0.0 <= m["selected_val_p_at_5"] <= 1.0
    g = load_generator(load_checkpoint(tmp_path / "sel.pt"))
    assert val_p_at_5(g, read_tag_data(*(tiny_data[k] for k in ("items", "vocab", "features"))),
                      TagIndex.load(tiny_data["emb"]), 5) == pytest.approx(m["selected_val_p_at_5"])  # fmt: skip
    plain = tiny_run(tiny_data, "last", tmp_path, train={"aux_weight": 1.0}, **kw)
    assert plain["selected_step"] == 6
