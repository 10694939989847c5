"""Stage open_cgan: the open-vocabulary tag CGAN (tag_cgan's `open` preset), trained with the shared GAN trainer.

G is conditioned on the backbone's ImageNet posterior (and, through a gate, on the image features) and learns
from class -> WordNet word pairs (photo knowledge without photos) beside the collection's image -> tag pairs;
see tagan/models/open_cgan.py (the networks) and tagan/tagging/open_cgan.py (the task). Runs under torchrun like the other GAN stages.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tagan import config, gan, stage, training
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.files import read_json
from tagan.models.open_cgan import OpenCGANConfig, build
from tagan.tagging.baselines import imagenet_head
from tagan.tagging.index import TagIndex, read_tag_data
from tagan.tagging.open_cgan import (
    ClassPairs,
    OpenCGANTask,
    OpenTrainConfig,
    class_targets,
    head_words,
    prior_table,
    related_classes,
)
from tagan.tagging.open_vocab import softmax
from tagan.tagging.vocabulary import ImageNetClasses, Vocabulary
from tagan.utils import seed_everything

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `open_cgan`: the network (model), its optimisers (optim) and training (train)."""

    seed: int = 0
    model: OpenCGANConfig = field(default_factory=OpenCGANConfig)
    optim: gan.OptimConfig = field(default_factory=gan.OptimConfig)
    train: OpenTrainConfig = field(default_factory=OpenTrainConfig)


def run(
    cfg: Params,
    runtime: Runtime,
    items_path: Path,
    vocab_path: Path,
    features_path: Path,
    embeddings_dir: Path,
    vocabulary_dir: Path,
    model_path: Path,
    plot_path: Path,
    *,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Train G and D on class pairs + image pairs; write the checkpoint (config and head words inside) and losses."""
    t0 = time.perf_counter()
    device, info = training.setup(runtime)
    seed_everything(cfg.seed + info.rank)
    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(Path(embeddings_dir) / "open")
    vocab = Vocabulary.load(vocabulary_dir)
    classes = ImageNetClasses.from_json(read_json(Path(vocabulary_dir) / "imagenet.json"))
    head = imagenet_head(data.backbone)
    if head is None:
        raise UserError(
            f"the open CGAN needs the ImageNet head of the backbone; {data.backbone} has none wired"
        )
    words = [w for w in head_words(vocab, data.vocab) if w in index.word_index]
    hid = {w: i for i, w in enumerate(words)}
    targets = class_targets(
        classes,
        vocab,
        hid,
        max_hops=cfg.train.max_hops,
        specificity=cfg.train.specificity,
        setting=cfg.train.setting,
    )
    pairs = ClassPairs(targets, related_classes(classes), a_min=cfg.train.a_min)
    rows, tags = zip(*[(r, hid[t]) for r in data.rows("train") for t in data.tags[r] if t in hid])
    rows_a, words_a = np.array(rows), np.array(tags)
    model = dataclasses.replace(
        cfg.model, feature_dim=data.features.shape[1], n_classes=len(classes.wnids), tag_dim=index.dim,
        n_words=len(words),
    )  # fmt: skip
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    g, d = build(model)
    head_vecs = torch.from_numpy(index.vectors[[index.word_index[w] for w in words]])  # (W, D)
    g.head_vectors.copy_(head_vecs)
    g.prior.copy_(torch.from_numpy(prior_table(targets, len(words))))
    train_feats = torch.from_numpy(data.features[np.unique(rows_a)])
    g.norm.fit(train_feats)
    d.norm.fit(train_feats)
    posteriors = softmax(data.features @ head[0].T + head[1]).astype(np.float32)  # (N, C)
    task = OpenCGANTask(
        torch.from_numpy(data.features).to(device), torch.from_numpy(posteriors).to(device), rows_a, words_a,
        pairs, head_vecs.to(device), model.noise_dim, cfg.train,
    )  # fmt: skip
    params_dict = config.to_dict(cfg)
    fitted = gan.fit(
        task, g.to(device), d.to(device), cfg.train, cfg.optim, name="tag_cgan_open",
        config_dict={**params_dict, "head": len(words)}, seed=cfg.seed, info=info,
    )  # fmt: skip
    result: dict[str, float] = {}
    if info.is_main:
        g, d = fitted.g.cpu(), fitted.d.cpu().eval()
        result = {
            "head_words": len(words),
            "image_pairs": len(rows_a),
            "classes_with_targets": int(len(pairs.valid)),
            "mean_targets_per_class": float(np.mean([len(t[0]) for t in targets])),
            "steps": cfg.train.steps,
            **fitted.final_losses(),
            "seconds": time.perf_counter() - t0,
        }
        log.info("open_cgan: %s", result)
        fitted.save(
            model_path, {"model": model.to_dict(), "head": words, "params": params_dict, "preset": "open"},
            {"generator": g.state_dict(), "discriminator": d.state_dict()}, plot_path, metrics_path, result,
        )  # fmt: skip
    fitted.finish()
    return result


def main() -> None:
    stage.main(run, Params, "open_cgan")


if __name__ == "__main__":
    main()
