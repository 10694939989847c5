"""The Tagger: cli.py's view of one method of a bundle (a thin facade over tagan.tagging.methods).

It checks what a user can get wrong (feature shape, an allowed-tag list outside the vocabulary) and adds what
the CLI shows: `info`, `words`, `path(word)`. The method decodes with the settings stored in the bundle (those
its test metrics were scored with); `samples` / `neighbors` override them for one call.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tagan.errors import UserError
from tagan.tagging.bundle import Bundle
from tagan.tagging.index import Tags
from tagan.tagging.methods import Method, Resources, load_method


class Tagger:
    """Tags images from their backbone features with one method of a bundle written by tag_eval."""

    def __init__(self, model_dir: Path, method: str, bundle: Bundle, model: Method) -> None:
        self.model_dir, self.method, self.bundle, self.model = Path(model_dir), method, bundle, model
        self.words = model.words

    @classmethod
    def load(cls, model_dir: Path, method: str = "cgan") -> Tagger:
        """Open a bundle directory; unknown methods or missing files raise UserError naming the fix."""
        bundle = Bundle.load(model_dir)
        name = bundle.resolve(method)
        return cls(model_dir, name, bundle, load_method(model_dir, name, bundle, Resources(model_dir)))

    @property
    def info(self) -> dict[str, Any]:
        """The bundle's info.json as a dict, plus the method served and its decoding."""
        entry = self.bundle.methods[self.method]
        return {
            **self.bundle.to_json(),
            "backbone": self.bundle.features.backbone,
            "method": self.method,
            "decoding": {"kind": entry.kind, **entry.settings},
        }

    @property
    def feature_dim(self) -> int:
        return self.bundle.feature_dim

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
        """Tags for images given their features (B, F): per image a list of (word, score), best first."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserError(
                f"features must be (B, {self.feature_dim}) from backbone {self.bundle.features.backbone}, "
                f"got {features.shape}; extract them with the bundle's backbone"
            )
        allowed_set = set(allowed) if allowed is not None else None
        if allowed_set is not None and not allowed_set & set(self.words):
            raise UserError("none of the allowed tags is in the model's vocabulary; check the tag list")
        settings = vars(self.model.settings)
        change = {k: v for k, v in (("samples", samples), ("neighbors", neighbors)) if k in settings}
        return self.model.variant(**change).tag(features, top_k=top_k, seed=seed, allowed=allowed_set)

    def path(self, word: str) -> list[str]:
        """WordNet path of a tag, broad -> specific, ending with the word ([] when the bundle has no vocabulary)."""
        vocab = self.model.resources.vocabulary()
        if vocab is None or word not in vocab.index:
            return []
        broader = vocab.broader(word)
        return [*reversed(broader), word] if broader else []
