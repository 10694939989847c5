"""Stage tag_cgan: train the tag CGAN on (image feature, tag vector) pairs, one pair per training tag.

`python -m pipeline.tag_cgan --preset paper|strong` (a dvc foreach over presets); runs unchanged
under `torchrun --nproc_per_node N` (DDP, rank 0 writes) and resumes from its last resume file.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from tagan import config, metrics, training
from tagan.config import Runtime
from tagan.models.tag_cgan import TagCGANConfig, build, sample
from tagan.tagging import TagData, TagIndex, decode_votes, read_tag_data
from tagan.utils import (
    UserError,
    progress,
    save_checkpoint,
    seed_everything,
    stage_main,
    write_csv,
    write_json,
)

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `tag_cgan.<preset>`: network shape (TagCGANConfig fields) plus training."""

    # generator
    noise_dim: int = 100
    g_noise_hidden: int = 500
    g_cond_hidden: int = 2000
    g_joint_hidden: int = 0
    g_dropout: float = 0.5
    output: Literal["linear", "vocab"] = "linear"
    temperature: float = 0.5
    # discriminator
    d_tag_hidden: int = 500
    d_cond_hidden: int = 1200
    d_maxout_units: int = 1000
    d_maxout_pieces: int = 3
    d_dropout: float = 0.5
    discriminator: Literal["concat", "projection"] = "concat"
    # training
    loss: Literal["bce", "hinge"] = "bce"
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr_g: float = 0.1
    lr_d: float = 0.1
    momentum: float = 0.5  # SGD momentum, or Adam beta1
    mismatch: float = 0.0  # weight of (real tag, wrong image) pairs shown to D as fake (matching-aware D)
    aux_weight: float = 0.0  # vocab head only: cross-entropy of the real tag under G's vocabulary softmax
    select_every: int = 0  # score val P@5 every N steps and keep the best generator (0 = keep the last)
    select_samples: int = 100  # generated vectors per val image when selecting (1 nearest word each)
    batch_size: int = 100
    steps: int = 3000
    log_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        for key in (
            "noise_dim",
            "g_noise_hidden",
            "g_cond_hidden",
            "d_tag_hidden",
            "d_cond_hidden",
            "d_maxout_units",
            "d_maxout_pieces",
            "lr_g",
            "lr_d",
            "batch_size",
            "steps",
            "log_every",
            "temperature",
        ):
            config.positive(key, getattr(self, key))
        for key in ("g_dropout", "d_dropout", "momentum"):
            config.in_range(key, getattr(self, key), 0.0, 0.99)
        config.check(self.g_joint_hidden >= 0, "g_joint_hidden", f"must be >= 0, got {self.g_joint_hidden}")
        config.check(self.mismatch >= 0, "mismatch", f"must be >= 0, got {self.mismatch}")
        config.check(self.aux_weight >= 0, "aux_weight", f"must be >= 0, got {self.aux_weight}")
        config.check(
            self.aux_weight == 0 or self.output == "vocab",
            "aux_weight",
            "needs output: vocab (the auxiliary loss is on G's vocabulary softmax)",
        )
        config.check(self.select_every >= 0, "select_every", f"must be >= 0, got {self.select_every}")
        config.positive("select_samples", self.select_samples)
        config.check(
            self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}"
        )

    def model_config(self, feature_dim: int, tag_dim: int, vocab_size: int) -> TagCGANConfig:
        names = {f.name for f in fields(TagCGANConfig)} - {"feature_dim", "tag_dim", "vocab_size"}
        return TagCGANConfig(
            feature_dim=feature_dim,
            tag_dim=tag_dim,
            vocab_size=vocab_size,
            **{n: getattr(self, n) for n in names},
        )


def training_pairs(data: TagData, index: TagIndex, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """One (image row, tag id) pair per tag of every `split` image (the paper's repetition)."""
    rows, tags = [], []
    for r in data.rows(split):
        for t in data.tags[r]:
            if t in index.word_index:
                rows.append(r)
                tags.append(index.word_index[t])
    if not rows:
        raise UserError(
            f"no {split} image has a tag in the embedding vocabulary; check tags_data and tag_embeddings"
        )
    return np.array(rows), np.array(tags)


def d_loss_fn(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # BCE with logits


def g_loss_fn(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


def sample_hit_rate(
    g: torch.nn.Module, data: TagData, index: TagIndex, split: str, samples: int = 20
) -> float:
    """Share of generated vectors whose nearest vocabulary word is one of the image's tags."""
    rows = data.rows(split)
    if rows.size == 0:
        return float("nan")
    gen = sample(g, torch.from_numpy(data.features[rows]), samples, seed=1).numpy()  # (B, S, D)
    _, idx = index.search(gen.reshape(-1, gen.shape[-1]), 1)
    idx = idx.reshape(len(rows), samples)
    hits = [np.mean([index.words[j] in set(data.tags[r]) for j in idx[i]]) for i, r in enumerate(rows)]
    return float(np.mean(hits))


def val_p_at_5(g: torch.nn.Module, data: TagData, index: TagIndex, samples: int, seed: int = 0) -> float:
    """Val P@5 of G with `samples` generated vectors per image, each voting for its nearest word."""
    rows = data.rows("val")
    if rows.size == 0:
        return float("nan")
    was_training = g.training
    g.eval()
    device = next(g.parameters()).device
    gen = sample(g, torch.from_numpy(data.features[rows]).to(device), samples, seed)  # (B, S, D)
    g.train(was_training)
    tags = decode_votes(gen, index, neighbors=1, top_k=5)
    predicted = [[w for w, _ in row] for row in tags]
    return metrics.tagging_metrics(predicted, [set(data.tags[r]) for r in rows], len(index))["p_at_5"]


def run(
    cfg: Params,
    runtime: Runtime,
    preset: str,
    items_path: Path,
    vocab_path: Path,
    features_path: Path,
    embeddings_dir: Path,
    model_path: Path,
    plot_path: Path,
) -> dict[str, float]:
    """Train G and D; write the generator+discriminator checkpoint (config inside) and the loss curve."""
    t0 = time.perf_counter()
    device, info = training.setup(runtime)
    seed_everything(cfg.seed + info.rank)

    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(embeddings_dir)
    rows, tag_ids = training_pairs(data, index)
    feats = torch.from_numpy(data.features).to(device)  # (N, F)
    vocab_vecs = torch.from_numpy(index.vectors).to(device)  # (V, D)
    model_cfg = cfg.model_config(data.features.shape[1], index.dim, len(index))
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    g, d = build(model_cfg)
    train_feats = torch.from_numpy(data.features[np.unique(rows)])
    g.norm.fit(train_feats)
    d.norm.fit(train_feats)
    if model_cfg.output == "vocab":
        g.vocab_vectors.copy_(torch.from_numpy(index.vectors))
    g, d = g.to(device), d.to(device)
    if cfg.optimizer == "sgd":
        opt_g = torch.optim.SGD(g.parameters(), lr=cfg.lr_g, momentum=cfg.momentum)
        opt_d = torch.optim.SGD(d.parameters(), lr=cfg.lr_d, momentum=cfg.momentum)
    else:
        opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=(cfg.momentum, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=(cfg.momentum, 0.999))
    g_run, d_run = training.wrap(g, info), training.wrap(d, info)

    params_dict = config.to_dict(cfg)
    ckpt = training.Checkpointer(
        f"tag_cgan_{preset}", {**params_dict, "pairs": len(rows)}, cfg.checkpoint_every, info
    )
    objects = {"g": g, "d": d, "opt_g": opt_g, "opt_d": opt_d}
    start, extra = ckpt.load(objects)
    curve: list[dict[str, float]] = list(extra.get("curve", []))
    best: dict[str, Any] = extra.get("best", {"val_p_at_5": -1.0, "step": 0})  # model selection on val
    rows_t, tags_t = torch.from_numpy(rows).to(device), torch.from_numpy(tag_ids).to(device)
    n = len(rows)
    acc = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
    g.train()
    d.train()
    for step in progress(range(start, cfg.steps), desc=f"tag_cgan {preset}", total=cfg.steps - start):
        b = training.batch_indices(n, cfg.batch_size, step, cfg.seed, info).to(device)
        x = feats[rows_t[b]]  # (B, F)
        t_real = vocab_vecs[tags_t[b]]  # (B, D)
        z = torch.randn(len(b), cfg.noise_dim, device=device)
        t_fake = g_run(z, x)  # (B, D)
        real, fake = d_run(t_real, x), d_run(t_fake.detach(), x)
        loss_d = d_loss_fn(cfg.loss, real, fake)
        if cfg.mismatch > 0:  # a real tag on another image of the batch is also 'fake'
            wrong = d_run(t_real, x.roll(1, dims=0))
            loss_d = loss_d + cfg.mismatch * (
                F.relu(1 + wrong).mean() if cfg.loss == "hinge" else F.softplus(wrong).mean()
            )
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        z = torch.randn(len(b), cfg.noise_dim, device=device)
        t_fake, logits = g_run(z, x, return_logits=True)
        loss_g = g_loss_fn(cfg.loss, d_run(t_fake, x))
        if cfg.aux_weight > 0:  # maximum likelihood of the real tag under G's vocabulary softmax
            loss_g = loss_g + cfg.aux_weight * F.cross_entropy(logits, tags_t[b])
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        acc["d_loss"] += loss_d.item()
        acc["g_loss"] += loss_g.item()
        acc["d_real"] += real.mean().item()
        acc["d_fake"] += fake.mean().item()
        if (step + 1) % cfg.log_every == 0:
            row = {
                "step": step + 1,
                **{k: training.mean_across_ranks(v / cfg.log_every, info) for k, v in acc.items()},
            }
            curve.append(row)
            acc = dict.fromkeys(acc, 0.0)
        if cfg.select_every and (step + 1) % cfg.select_every == 0 and info.is_main:
            p5 = val_p_at_5(g, data, index, cfg.select_samples)
            log.info("step %d: val P@5 %.4f (best %.4f)", step + 1, p5, best["val_p_at_5"])
            if p5 > best["val_p_at_5"]:
                best = {
                    "val_p_at_5": p5,
                    "step": step + 1,
                    "generator": {k: v.detach().cpu().clone() for k, v in g.state_dict().items()},
                    "discriminator": {k: v.detach().cpu().clone() for k, v in d.state_dict().items()},
                }
        ckpt.maybe_save(step + 1, objects, {"curve": curve, "best": best})

    g.eval()
    if "generator" in best:  # the selected step's weights, not the last step's
        g.load_state_dict(best["generator"])
        d.load_state_dict(best["discriminator"])
        log.info("kept step %d (val P@5 %.4f)", best["step"], best["val_p_at_5"])
    result: dict[str, float] = {}
    if info.is_main:
        save_checkpoint(
            model_path,
            {"model": model_cfg.to_dict(), "params": params_dict, "preset": preset, "vocab": index.words},
            {"generator": g.state_dict(), "discriminator": d.state_dict()},
        )
        write_csv(plot_path, curve)
        last = curve[-1] if curve else {}
        result = {
            "pairs": n,
            "steps": cfg.steps,
            "final_d_loss": last.get("d_loss", float("nan")),
            "final_g_loss": last.get("g_loss", float("nan")),
            "val_sample_hit": sample_hit_rate(g.cpu(), data, index, "val"),
            "selected_step": best["step"] if "generator" in best else cfg.steps,
            "selected_val_p_at_5": best["val_p_at_5"] if "generator" in best else float("nan"),
            "seconds": time.perf_counter() - t0,
        }
        log.info("tag_cgan %s: %s", preset, result)
    ckpt.finish()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", required=True, help="params.yaml tag_cgan.<preset> (paper | strong)")
    parser.add_argument("--items", type=Path, default=Path("data/tags/items.jsonl"))
    parser.add_argument("--vocab", type=Path, default=Path("data/tags/vocab.json"))
    parser.add_argument("--features", type=Path, default=Path("data/features/features.npz"))
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings"))
    parser.add_argument("--model", type=Path, help="default data/models/tag_cgan_<preset>.pt")
    parser.add_argument("--plot", type=Path, help="default plots/tag_cgan_<preset>_loss.csv")
    parser.add_argument("--metrics", type=Path, help="default metrics/tag_cgan_<preset>.json")
    args = parser.parse_args()
    cfg, runtime = config.load_stage(Params, f"tag_cgan.{args.preset}")
    result = run(
        cfg,
        runtime,
        args.preset,
        args.items,
        args.vocab,
        args.features,
        args.embeddings,
        args.model or Path(f"data/models/tag_cgan_{args.preset}.pt"),
        args.plot or Path(f"plots/tag_cgan_{args.preset}_loss.csv"),
    )
    if result:  # rank 0 only
        write_json(args.metrics or Path(f"metrics/tag_cgan_{args.preset}.json"), result)


if __name__ == "__main__":
    stage_main(main)
