"""The Tagger: tags images from backbone features with one method of a bundle written by tag_eval.

Used by cli.py; the bundle (default data/tagger/) holds the CGANs, the index and every baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagan.tagging import (
    TagIndex,
    Tags,
    decode_votes,
    knn_scores,
    top_from_scores,
    zeroshot_scores,
)
from tagan.utils import UserError, load_checkpoint, read_json


class Tagger:
    """Tags images from their backbone features with one method of a bundle written by tag_eval."""

    def __init__(self, model_dir: Path, method: str, info: dict[str, Any], index: TagIndex) -> None:
        self.model_dir, self.method, self._info, self.index = Path(model_dir), method, info, index
        self.words = index.words
        self._scorer: Any = None
        self._generator: Any = None

    @classmethod
    def load(cls, model_dir: Path, method: str = "cgan") -> Tagger:
        """Open a bundle directory; unknown methods or missing files raise UserError naming the fix."""
        model_dir = Path(model_dir)
        if not (model_dir / "info.json").exists():
            raise UserError(
                f"{model_dir} is not a tagger bundle (no info.json); build it with `dvc repro tag_eval`"
            )
        info = read_json(model_dir / "info.json")
        method = info.get("aliases", {}).get(method, method)
        available = info.get("methods", [])
        if method not in available:
            raise UserError(
                f"method {method!r} is not in bundle {model_dir}; choose one of {', '.join(available)}"
            )
        self = cls(model_dir, method, info, TagIndex.load(model_dir / "index"))
        self._prepare()
        return self

    @property
    def info(self) -> dict[str, Any]:
        """Dataset, backbone, vocabulary size, params and per-method test metrics of the bundle."""
        return {**self._info, "method": self.method}

    @property
    def feature_dim(self) -> int:
        return int(self._info["feature_dim"])

    def _prepare(self) -> None:
        d, m = self.model_dir, self.method
        if m.startswith("cgan_"):
            from tagan.models.tag_cgan import load_generator

            self._generator = load_generator(load_checkpoint(d / f"{m}.pt"))
        elif m == "regressor":
            from tagan.models.tag_baselines import load_model

            self._generator = load_model(load_checkpoint(d / "regressor.pt"))
        elif m == "classifier":
            from tagan.models.tag_baselines import load_model

            self._scorer = load_model(load_checkpoint(d / "classifier.pt"))
        elif m == "knn":
            z = np.load(d / "knn.npz")
            self._scorer = (z["features"], z["tags"].astype(np.float32), int(z["k"].reshape(-1)[0]))
        elif m == "zeroshot":
            z = np.load(d / "zeroshot.npz")
            self._scorer = (z["weight"], z["bias"], z["class_to_tag"], int(z["top_classes"].reshape(-1)[0]))
        elif m == "prior":
            counts = read_json(d / "prior.json")
            self._scorer = np.array([counts.get(w, 0) for w in self.words], dtype=np.float64)

    def decode_params(self) -> dict[str, Any]:
        """Decoding used for generated vectors: neighbors and weighted votes for this method."""
        return dict(self._info.get("decoding", {}).get(self.method, {"neighbors": 20, "weighted": False}))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(B, V) tag scores for the score-based methods (knn, classifier, zeroshot, prior)."""
        x = np.asarray(features, dtype=np.float32)
        m = self.method
        if m == "knn":
            feats, tags, k = self._scorer
            return knn_scores(feats, tags, x, k)
        if m == "classifier":
            with torch.no_grad():
                return torch.sigmoid(self._scorer(torch.from_numpy(x))).numpy()
        if m == "zeroshot":
            weight, bias, class_to_tag, top = self._scorer
            return zeroshot_scores(x @ weight.T + bias, class_to_tag, top)
        if m == "prior":
            return np.tile(self._scorer / max(self._scorer.sum(), 1.0), (x.shape[0], 1))
        raise ValueError(f"method {m} generates vectors; use generate()")

    def generate(self, features: np.ndarray, samples: int = 100, seed: int = 0) -> torch.Tensor:
        """(B, S, D) generated tag vectors (regressor: S = 1, deterministic)."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        if self.method == "regressor":
            with torch.no_grad():
                return self._generator(x)[:, None, :]
        from tagan.models.tag_cgan import sample

        return sample(self._generator, x, samples, seed)

    def tag(
        self,
        features: np.ndarray,
        *,
        top_k: int = 10,
        samples: int | None = None,
        seed: int = 0,
        allowed: Iterable[str] | None = None,
        neighbors: int | None = None,
    ) -> Tags:
        """Tags for images given their features (B, F): per image a list of (word, score), best first.

        samples / neighbors default to the bundle's decoding for this method (chosen on val by tag_eval).
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserError(
                f"features must be (B, {self.feature_dim}) from backbone {self._info.get('backbone')}, "
                f"got {features.shape}; extract them with the bundle's backbone"
            )
        allowed_set = set(allowed) if allowed is not None else None
        if allowed_set is not None and not allowed_set & set(self.words):
            raise UserError("none of the allowed tags is in the model's vocabulary; check the tag list")
        if self._generator is not None:
            p = self.decode_params()
            return decode_votes(
                self.generate(features, samples or int(p.get("samples", 100)), seed),
                self.index,
                top_k=top_k,
                allowed=allowed_set,
                neighbors=neighbors or int(p["neighbors"]),
                weighted=bool(p.get("weighted", False)),
            )
        return top_from_scores(self.scores(features), self.words, top_k, allowed_set)
