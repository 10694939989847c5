"""Stage tag_cgan: train the tag CGAN on (image feature, tag vector) pairs, one pair per training tag.

`python -m pipeline.tag_cgan --preset paper|strong` (a dvc foreach over presets); runs unchanged
under `torchrun --nproc_per_node N` (DDP, rank 0 writes) and resumes from its last resume file.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from tagan import config, gan, stage, training
from tagan.config import Runtime
from tagan.models.tag_cgan import TagCGANConfig
from tagan.tagging import tag_cgan
from tagan.tagging.index import TagIndex, read_tag_data
from tagan.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `tag_cgan.<preset>`: the network (model), its optimisers (optim) and training (train)."""

    seed: int = 0
    model: TagCGANConfig = field(default_factory=TagCGANConfig)
    optim: gan.OptimConfig = field(default_factory=gan.OptimConfig)
    train: tag_cgan.TagTrainConfig = field(default_factory=tag_cgan.TagTrainConfig)
    select_samples: int = 100  # generated vectors per val image when selecting ...
    select_neighbors: int = 1  # ... each voting for this many nearest words (the paper's decoding: 20)

    def __post_init__(self) -> None:
        config.positive("select_samples", self.select_samples)
        config.positive("select_neighbors", self.select_neighbors)
        config.check(
            self.train.aux_weight == 0 or self.model.output == "vocab",
            "train.aux_weight",
            "needs model.output: vocab (the auxiliary loss is on G's vocabulary softmax)",
        )
        config.check(
            self.train.tag_scale == 1 or self.model.output == "linear",
            "train.tag_scale",
            "needs model.output: linear (the vocab head mixes the unit word vectors)",
        )


def run(
    cfg: Params,
    runtime: Runtime,
    preset: Literal["paper", "strong"],
    items_path: Path,
    vocab_path: Path,
    features_path: Path,
    embeddings_dir: Path,
    model_path: Path,
    plot_path: Path,
    *,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Train G and D; write the generator+discriminator checkpoint (config inside) and the loss curve."""
    t0 = time.perf_counter()
    device, info = training.setup(runtime)
    seed_everything(cfg.seed + info.rank)
    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(embeddings_dir)
    rows, tag_ids = tag_cgan.training_pairs(data, index)
    task = tag_cgan.TagCGANTask.from_data(data, index, rows, tag_ids, cfg.model.noise_dim, cfg.train, device)

    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    g, d, sizes = tag_cgan.build_for_data(cfg.model, data, index, rows)
    params_dict = config.to_dict(cfg)
    val_p_at_5 = functools.partial(
        tag_cgan.val_p_at_5,
        data=data,
        index=index,
        samples=cfg.select_samples,
        neighbors=cfg.select_neighbors,
    )  # val P@5 of a G
    fitted = gan.fit(
        task, g.to(device), d.to(device), cfg.train, cfg.optim, name=f"tag_cgan_{preset}",
        config_dict={**params_dict, "pairs": len(rows)}, seed=cfg.seed, info=info,
        select=val_p_at_5 if cfg.train.select_every else None,
    )  # fmt: skip

    result: dict[str, float] = {}
    if info.is_main:
        g, d = fitted.g.cpu(), fitted.d.cpu().eval()
        result = {
            "pairs": len(rows),
            "steps": cfg.train.steps,
            **fitted.final_losses(),
            "val_sample_hit": tag_cgan.sample_hit_rate(g, data, index, "val"),
            "selected_step": fitted.selected_step,
            "selected_val_p_at_5": fitted.selected_score,
            "seconds": time.perf_counter() - t0,
        }
        log.info("tag_cgan %s: %s", preset, result)
        fitted.save(
            model_path,
            {"model": cfg.model.to_dict(), "sizes": sizes.to_dict(), "params": params_dict, "preset": preset,
             "vocab": index.words},
            {"generator": g.state_dict(), "discriminator": d.state_dict()},
            plot_path, metrics_path, result,
        )  # fmt: skip
    fitted.finish()
    return result


def main() -> None:
    stage.main(run, Params, "tag_cgan")


if __name__ == "__main__":
    main()
