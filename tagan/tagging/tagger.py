"""The Tagger: tags images from backbone features with one method of a bundle written by tag_eval.

Used by cli.py and the photo_eval stage; every method decodes with the settings stored in the bundle
(`tagan.tagging.bundle.Decoding`), the ones its test metrics were scored with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tagan.errors import UserError
from tagan.files import read_json
from tagan.tagging.bundle import Bundle, Decoding
from tagan.tagging.index import TagIndex, Tags, decode_votes, knn_scores, top_from_scores, zeroshot_scores
from tagan.utils import load_checkpoint


class Tagger:
    """Tags images from their backbone features with one method of a bundle written by tag_eval."""

    def __init__(self, model_dir: Path, method: str, bundle: Bundle) -> None:
        self.model_dir, self.method, self.bundle = Path(model_dir), method, bundle
        self.spec: Decoding = bundle.methods[method]
        self.index = TagIndex.load(self.model_dir / ("open" if self.spec.vocabulary == "open" else "index"))
        self.words = self.index.words
        self._model: Any = None
        self._vocab: Any = None

    @classmethod
    def load(cls, model_dir: Path, method: str = "cgan") -> Tagger:
        """Open a bundle directory; unknown methods or missing files raise UserError naming the fix."""
        bundle = Bundle.load(model_dir)
        self = cls(model_dir, bundle.resolve(method), bundle)
        self._prepare()
        return self

    @property
    def info(self) -> dict[str, Any]:
        """The bundle's info.json as a dict, plus the method served and its decoding."""
        d = self.bundle.to_json()
        return {
            **d,
            "backbone": self.bundle.features.backbone,
            "method": self.method,
            "decoding": asdict(self.spec),
        }

    @property
    def feature_dim(self) -> int:
        return self.bundle.feature_dim

    # --- loading --------------------------------------------------------------------------------

    def _head(self) -> tuple[np.ndarray, np.ndarray]:
        path = self.model_dir / "imagenet_head.npz"
        if not path.is_file():
            raise UserError(
                f"method {self.method} needs the backbone's ImageNet head, absent from {self.model_dir}"
            )
        with np.load(path) as z:
            return z["weight"].astype(np.float32), z["bias"].astype(np.float32)

    def vocabulary(self) -> Any:
        """The bundle's open vocabulary (tagan.tagging.vocabulary.Vocabulary), or None when it has none."""
        if self._vocab is None and (self.model_dir / "vocabulary" / "words.jsonl").is_file():
            from tagan.tagging.vocabulary import Vocabulary

            self._vocab = Vocabulary.load(self.model_dir / "vocabulary")
        return self._vocab

    def _classes(self) -> Any:
        from tagan.tagging.vocabulary import ImageNetClasses

        path = self.model_dir / "vocabulary" / "imagenet.json"
        if not path.is_file():
            raise UserError(
                f"method {self.method} needs vocabulary/imagenet.json, absent from {self.model_dir}"
            )
        return ImageNetClasses.from_json(read_json(path))

    def _prepare(self) -> None:
        d, s = self.model_dir, self.spec
        if s.kind == "cgan" and s.vocabulary == "open":
            from tagan.models.open_cgan import OpenDecoder

            with np.load(d / "knn.npz") as z:  # the training images' features: the feature gate's domain
                train_features = z["features"].astype(np.float32)
            self._model = OpenDecoder.load(
                load_checkpoint(d / s.file), self.index, self._head(), train_features
            )
        elif s.kind == "cgan":
            from tagan.models.tag_cgan import load_generator

            self._model = load_generator(load_checkpoint(d / s.file))
        elif s.kind in ("regressor", "classifier"):
            from tagan.models.tag_baselines import load_model

            self._model = load_model(load_checkpoint(d / s.file))
        elif s.kind == "knn":
            with np.load(d / s.file) as z:
                self._model = (z["features"], z["tags"].astype(np.float32), int(z["k"].reshape(-1)[0]))
        elif s.kind == "zeroshot":
            with np.load(d / s.file) as z:
                self._model = (*self._head(), z["class_to_tag"])
        elif s.kind == "prior":
            counts = read_json(d / s.file)
            self._model = np.array([counts.get(w, 0) for w in self.words], dtype=np.float64)
        elif s.kind == "imagenet_names":
            self._model = (*self._head(), self._classes().names)
        elif s.kind == "conse":
            names = self._classes().names
            missing = [n for n in names if n not in self.index.word_index]
            if missing:
                raise UserError(f"ImageNet class names missing from the open index: {', '.join(missing[:5])}")
            self._model = (*self._head(), self.index.vectors[[self.index.word_index[n] for n in names]])
        elif s.kind == "wordnet":
            from tagan.tagging.open_vocab import WordNetPosterior

            self._model = (*self._head(), WordNetPosterior.build(self.vocabulary(), self._classes()))

    # --- tagging --------------------------------------------------------------------------------

    def posterior(self, features: np.ndarray) -> np.ndarray:
        """The backbone's ImageNet-1k class probabilities (B, 1000) from its pooled features (B, F)."""
        from tagan.tagging.open_vocab import softmax

        weight, bias = self._model[0], self._model[1]
        return softmax(features @ weight.T + bias)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(B, V) tag scores for the score-based methods (knn, classifier, zeroshot, prior)."""
        x = np.asarray(features, dtype=np.float32)
        kind = self.spec.kind
        if kind == "knn":
            feats, tags, k = self._model
            return knn_scores(feats, tags, x, k)
        if kind == "classifier":
            with torch.no_grad():
                return torch.sigmoid(self._model(torch.from_numpy(x))).numpy()
        if kind == "zeroshot":
            weight, bias, class_to_tag = self._model
            return zeroshot_scores(x @ weight.T + bias, class_to_tag, self.spec.top)
        if kind == "prior":
            return np.tile(self._model / max(self._model.sum(), 1.0), (x.shape[0], 1))
        raise ValueError(f"method {self.method} does not score the vocabulary")

    def generate(self, features: np.ndarray, samples: int, seed: int = 0) -> torch.Tensor:
        """(B, S, D) generated tag vectors (regressor: S = 1, deterministic)."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        if self.spec.kind == "regressor":
            with torch.no_grad():
                return self._model(x)[:, None, :]
        from tagan.models.tag_cgan import sample

        return sample(self._model, x, samples, seed)

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

        samples / neighbors default to the bundle's decoding for this method (its test metrics' settings).
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserError(
                f"features must be (B, {self.feature_dim}) from backbone {self.bundle.features.backbone}, "
                f"got {features.shape}; extract them with the bundle's backbone"
            )
        allowed_set = set(allowed) if allowed is not None else None
        if allowed_set is not None and not allowed_set & set(self.words):
            raise UserError("none of the allowed tags is in the model's vocabulary; check the tag list")
        s = self.spec
        samples = samples or s.samples
        neighbors = neighbors or s.neighbors
        if s.kind == "cgan" and s.vocabulary == "open":
            return self._model.tag(
                features, samples=samples, neighbors=neighbors, top_k=top_k, seed=seed,
                allowed=allowed_set, feature_gate=s.feature_gate,
            )  # fmt: skip
        if s.kind in ("cgan", "regressor"):
            return decode_votes(
                self.generate(features, samples, seed), self.index, top_k=top_k, allowed=allowed_set,
                neighbors=neighbors, weighted=s.weighted,
            )  # fmt: skip
        if s.kind == "imagenet_names":
            from tagan.tagging.open_vocab import imagenet_names

            names = self._model[2]
            probs = self.posterior(features)
            if allowed_set is not None:
                probs = probs * np.array([n in allowed_set for n in names])
            return [[(w, p) for w, p in row if p > 0] for row in imagenet_names(probs, names, top_k)]
        if s.kind == "conse":
            from tagan.tagging.open_vocab import conse_vectors

            vec = conse_vectors(self.posterior(features), self._model[2], s.top)  # (B, D)
            return decode_votes(
                vec[:, None, :], self.index, neighbors=top_k, top_k=top_k, allowed=allowed_set, weighted=True
            )
        if s.kind == "wordnet":
            model = self._model[2]
            scores = model.scores(self.posterior(features), s.beta, s.gamma)
            return top_from_scores(scores, model.words, top_k, allowed_set)
        return top_from_scores(self.scores(features), self.words, top_k, allowed_set)

    def path(self, word: str) -> list[str]:
        """WordNet path of a tag, broad -> specific, ending with the word ([] when the bundle has no vocabulary)."""
        vocab = self.vocabulary()
        if vocab is None or word not in vocab.index:
            return []
        broader = vocab.broader(word)
        return [*reversed(broader), word] if broader else []
