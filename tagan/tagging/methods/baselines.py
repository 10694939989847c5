"""The baseline methods over the training tags: prior, knn, classifier, regressor and zeroshot (registered kinds).

Their fitting lives in tagan.tagging.baselines; each class here is one registered kind with fit, save, load, tag.
The MLP methods import torch when they load (the module imports none, so that registering them costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tagan.files import read_json, save_npz, write_json
from tagan.tagging.index import knn_scores, tag_matrix, zeroshot_scores
from tagan.tagging.methods.base import FitContext, Resources, ScoreMethod, VoteMethod, register_method

if TYPE_CHECKING:
    import torch

    from tagan.models.tag_baselines import TagMLP


@register_method("prior")
class Prior(ScoreMethod):
    """Every image gets the most frequent training tags: scores = train tag frequencies."""

    def __init__(self, settings: Any, resources: Resources, counts: np.ndarray) -> None:
        super().__init__(settings, resources)
        self.counts = np.asarray(counts, dtype=np.float64)  # (V,) train tag counts

    @classmethod
    def fit(cls, ctx: FitContext, **options: Any) -> Prior:
        from tagan.tagging.baselines import frequency_prior  # scoring + scipy: fitting only

        counts = frequency_prior(ctx.data, ctx.train, ctx.resources.index().words)
        return cls(cls.Settings(**options), ctx.resources, counts)

    def save(self, directory: Path) -> None:
        write_json(Path(directory) / "prior.json", {w: int(c) for w, c in zip(self.words, self.counts)})

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> Prior:
        counts = read_json(Path(directory) / "prior.json")
        return cls(settings, resources, np.array([counts.get(w, 0) for w in resources.index().words]))

    def scores(self, features: np.ndarray) -> np.ndarray:
        return np.tile(self.counts / max(self.counts.sum(), 1.0), (features.shape[0], 1))


@register_method("knn")
class KNN(ScoreMethod):
    """kNN tag transfer: the k nearest training images (cosine) vote with their similarity; k chosen on val."""

    def __init__(
        self, settings: Any, resources: Resources, features: np.ndarray, tags: np.ndarray, k: int
    ) -> None:
        super().__init__(settings, resources)
        self.features, self.tags, self.k = features, tags.astype(np.float32), int(k)  # (N, F), (N, V)
        self.fit_report = {"k": self.k}

    @classmethod
    def fit(cls, ctx: FitContext, *, k_grid: list[int], **options: Any) -> KNN:
        words = ctx.resources.index().words
        from tagan.tagging.baselines import choose_knn_k  # scoring + scipy: fitting only

        k = choose_knn_k(ctx.data, ctx.train, ctx.val, words, k_grid)
        tags = tag_matrix([ctx.data.tags[r] for r in ctx.train], words)
        return cls(cls.Settings(**options), ctx.resources, ctx.data.features[ctx.train], tags, k)

    def save(self, directory: Path) -> None:
        save_npz(
            Path(directory) / "knn.npz",
            features=self.features,
            tags=self.tags.astype(np.uint8),
            k=np.array(self.k),
        )

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> KNN:
        with np.load(Path(directory) / "knn.npz") as z:
            return cls(settings, resources, z["features"], z["tags"], int(z["k"].reshape(-1)[0]))

    def scores(self, features: np.ndarray) -> np.ndarray:
        return knn_scores(self.features, self.tags, features, self.k)


class _MLPMethod:
    """fit / save / load of a TagMLP (the classifier's and regressor's shared half)."""

    mlp_kind: Literal["classifier", "regressor"]

    def __init__(self, settings: Any, resources: Resources, model: TagMLP) -> None:
        super().__init__(settings, resources)  # type: ignore[call-arg]
        self.model = model.eval()

    @classmethod
    def fit(
        cls, ctx: FitContext, *, hidden: int, epochs: int, lr: float, weight_decay: float, dropout: float,
        **options: Any,
    ) -> Any:  # fmt: skip
        from tagan.tagging.baselines import fit_mlp  # scoring + scipy: fitting only

        model = fit_mlp(
            cls.mlp_kind, ctx.data, ctx.train, ctx.resources.index(), hidden=hidden, epochs=epochs, lr=lr,
            weight_decay=weight_decay, dropout=dropout, seed=ctx.seed,
        )  # fmt: skip
        return cls(cls.Settings(**options), ctx.resources, model)  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        from tagan.utils import save_checkpoint  # torch

        save_checkpoint(Path(directory) / "model.pt", self.model.cfg.to_dict(), self.model.state_dict())

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> Any:
        from tagan.models.tag_baselines import load_model  # torch
        from tagan.utils import load_checkpoint

        return cls(settings, resources, load_model(load_checkpoint(Path(directory) / "model.pt")))


@register_method("classifier")
class Classifier(_MLPMethod, ScoreMethod):
    """MLP multi-label classifier (BCE on multi-hot tags): scores = sigmoid of its logits."""

    mlp_kind = "classifier"

    def scores(self, features: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return torch.sigmoid(self.model(torch.from_numpy(features))).numpy()


@dataclass
class NeighborSettings:
    neighbors: int = 20  # words the generated vector votes for


@register_method("regressor")
class Regressor(_MLPMethod, VoteMethod):
    """MLP regressor of the mean tag vector, decoded like one CGAN sample (votes of its nearest words)."""

    mlp_kind = "regressor"
    Settings = NeighborSettings

    def generate(self, features: np.ndarray, seed: int = 0) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(features))[:, None, :]  # (B, 1, D)


@dataclass
class ZeroShotSettings:
    top: int = 5  # ImageNet classes of an image that vote


@register_method("zeroshot")
class ZeroShot(ScoreMethod):
    """ImageNet zero-shot: the backbone's top classes (softmax over them) spread onto tags by class -> tag similarity."""

    Settings = ZeroShotSettings

    def __init__(self, settings: Any, resources: Resources, class_to_tag: np.ndarray) -> None:
        super().__init__(settings, resources)
        self.class_to_tag = class_to_tag  # (1000, V)

    @classmethod
    def fit(cls, ctx: FitContext, *, fallback: str, tags_per_class: int, **options: Any) -> ZeroShot:
        from tagan.tagging.baselines import imagenet_class_to_tag  # scoring + scipy: fitting only

        class_to_tag = imagenet_class_to_tag(ctx.resources.index().words, fallback, tags_per_class)
        return cls(cls.Settings(**options), ctx.resources, class_to_tag)

    def save(self, directory: Path) -> None:
        save_npz(Path(directory) / "zeroshot.npz", class_to_tag=self.class_to_tag)

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> ZeroShot:
        with np.load(Path(directory) / "zeroshot.npz") as z:
            return cls(settings, resources, z["class_to_tag"])

    def scores(self, features: np.ndarray) -> np.ndarray:
        weight, bias = self.resources.head()
        return zeroshot_scores(features @ weight.T + bias, self.class_to_tag, self.settings.top)
