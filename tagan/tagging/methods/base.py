"""What a tagging method is (`Method`: fit, save, load, tag), the registry of method kinds, and what methods share.

A method kind is one `Method` subclass registered with `@register_method("kind")`; a bundle names each of its
methods' kind in info.json, and `load_method(bundle_dir, name)` rebuilds it through this registry. Families
of methods (tagan.tagging.methods.baselines, .open_vocab, .cgan) share two bases: `ScoreMethod` (a (B, V)
score per vocabulary word, top-k) and `VoteMethod` (generated vectors voting for their nearest words).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from tagan import config
from tagan.errors import UserError
from tagan.files import read_json
from tagan.tagging.bundle import Bundle, MethodEntry, method_dir
from tagan.tagging.index import TagData, TagIndex, Tags, decode_votes, top_from_scores

if TYPE_CHECKING:
    import torch

M = TypeVar("M", bound="Method")
_REGISTRY: dict[str, type[Method]] = {}


def register_method(kind: str) -> Any:
    """Class decorator: register a Method subclass under `kind` (the name info.json stores)."""

    def add(cls: type[M]) -> type[M]:
        if kind in _REGISTRY:
            raise ValueError(f"method kind {kind!r} is registered twice")
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return add


def get_method(kind: str) -> type[Method]:
    """The Method class registered under `kind`."""
    if kind not in _REGISTRY:
        raise UserError(f"unknown tagging method kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def list_methods() -> list[str]:
    """Every registered method kind."""
    return sorted(_REGISTRY)


@dataclass
class NoSettings:
    """A method that decodes one way only."""


class Resources:
    """The parts of a bundle its methods share (loaded once, on first use): indexes, ImageNet head, vocabulary."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, build: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def index(self, vocabulary: Literal["tags", "open"] = "tags") -> TagIndex:
        """The training-tag index ("tags") or the open vocabulary's ("open")."""
        folder = self.directory / ("open" if vocabulary == "open" else "index")
        return self._once(f"index:{vocabulary}", lambda: TagIndex.load(folder))

    def has_head(self) -> bool:
        return (self.directory / "imagenet_head.npz").is_file()

    def has_classes(self) -> bool:
        return (self.directory / "vocabulary" / "imagenet.json").is_file()

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The backbone's ImageNet classifier: weight (1000, F), bias (1000,)."""
        path = self.directory / "imagenet_head.npz"
        if not path.is_file():
            raise UserError(f"this method needs the backbone's ImageNet head, absent from {self.directory}")

        def read() -> tuple[np.ndarray, np.ndarray]:
            with np.load(path) as z:
                return z["weight"].astype(np.float32), z["bias"].astype(np.float32)

        return self._once("head", read)

    def posterior(self, features: np.ndarray) -> np.ndarray:
        """The backbone's ImageNet-1k class probabilities (B, 1000) from its pooled features (B, F)."""
        from tagan.tagging.open_vocab import posterior

        return posterior(features, self.head())

    def vocabulary(self) -> Any:
        """The open vocabulary (tagan.tagging.vocabulary.Vocabulary), or None when the bundle has none."""
        from tagan.tagging.vocabulary import Vocabulary

        folder = self.directory / "vocabulary"
        return self._once(
            "vocabulary", lambda: Vocabulary.load(folder) if (folder / "words.jsonl").is_file() else None
        )

    def classes(self) -> Any:
        """The ImageNet-1k classes (tagan.tagging.vocabulary.ImageNetClasses) of the open vocabulary."""
        from tagan.tagging.vocabulary import ImageNetClasses

        path = self.directory / "vocabulary" / "imagenet.json"
        if not path.is_file():
            raise UserError(f"this method needs vocabulary/imagenet.json, absent from {self.directory}")
        return self._once("classes", lambda: ImageNetClasses.from_json(read_json(path)))


@dataclass
class FitContext:
    """What fitting a method sees: the tag data, its train / val rows, and the bundle being written."""

    data: TagData
    train: np.ndarray
    val: np.ndarray
    resources: Resources
    seed: int = 0


class Method:
    """A tagging method: `fit` on tag data, `save` into / `load` from its bundle folder, `tag` features.

    Subclasses set `Settings` (a dataclass of decoding settings stored in info.json) and `vocabulary`, and
    register with `@register_method("kind")`.
    """

    kind: ClassVar[str] = ""
    vocabulary: ClassVar[Literal["tags", "open"]] = "tags"
    Settings: ClassVar[type] = NoSettings

    def __init__(self, settings: Any, resources: Resources) -> None:
        self.settings, self.resources = settings, resources
        self.fit_report: dict[str, float] = {}  # numbers chosen while fitting (kNN's k, a tuned decoding)

    @property
    def index(self) -> TagIndex:
        return self.resources.index(self.vocabulary)

    @property
    def words(self) -> list[str]:
        return self.index.words

    @classmethod
    def fit(cls: type[M], ctx: FitContext, **options: Any) -> M:
        """Fit on ctx's train rows (choices on its val rows); options: the kind's Settings and fit options."""
        return cls(cls.Settings(**options), ctx.resources)

    def save(self, directory: Path) -> None:
        """Write this method's own files into `directory` (nothing for a method that has none)."""

    @classmethod
    def load(cls: type[M], directory: Path, settings: Any, resources: Resources) -> M:
        """Rebuild a method from its bundle folder (`directory`) and its Settings."""
        return cls(settings, resources)

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        """Per image of features (B, F): up to top_k (word, score), best first, words restricted to `allowed`."""
        raise NotImplementedError

    def describe(self, features: np.ndarray, seed: int = 0) -> dict[str, float]:
        """Numbers reported beside this method's test metrics (tag_eval): by default its fit_report."""
        return dict(self.fit_report)

    def variant(self: M, **change: Any) -> M:
        """The same fitted method decoding with some settings changed (None values keep the setting)."""
        change = {k: v for k, v in change.items() if v is not None}
        if not change:
            return self
        other = copy.copy(self)
        other.settings = dataclasses.replace(self.settings, **change)
        return other


class ScoreMethod(Method):
    """A method that scores every vocabulary word: its tags are the top-k scores."""

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(B, V) scores of the vocabulary's words."""
        raise NotImplementedError

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        return top_from_scores(
            self.scores(np.asarray(features, dtype=np.float32)), self.words, top_k, allowed
        )


class VoteMethod(Method):
    """A method that generates tag vectors: each votes for its nearest words (`settings.neighbors`)."""

    def generate(self, features: np.ndarray, seed: int = 0) -> torch.Tensor:
        """(B, S, D) generated tag vectors."""
        raise NotImplementedError

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        s = self.settings
        return decode_votes(
            self.generate(np.asarray(features, dtype=np.float32), seed), self.index, top_k=top_k, allowed=allowed,
            neighbors=s.neighbors, weighted=getattr(s, "weighted", False),
        )  # fmt: skip


def settings_dict(method: Method) -> dict[str, Any]:
    """A method's Settings as the plain dict info.json stores."""
    return config.to_dict(method.settings)


def save_method(bundle_dir: Path, name: str, method: Method) -> MethodEntry:
    """Write `method` into its folder of a bundle; its info.json entry (kind and settings)."""
    directory = method_dir(bundle_dir, name)
    directory.mkdir(parents=True, exist_ok=True)
    method.save(directory)
    return MethodEntry(method.kind, settings_dict(method))


def load_method(
    bundle_dir: Path, name: str, bundle: Bundle | None = None, resources: Resources | None = None
) -> Method:
    """Method `name` (or an alias such as `cgan`) of a bundle, rebuilt through the registry."""
    bundle = bundle or Bundle.load(bundle_dir)
    name = bundle.resolve(name)
    entry = bundle.methods[name]
    cls = get_method(entry.kind)
    try:
        settings = config.from_dict(cls.Settings, entry.settings, f"methods.{name}.settings")
    except config.ParamsError as e:
        raise UserError(
            f"tagger bundle info.json is malformed ({e}); rebuild it with `dvc repro tag_eval`"
        ) from None
    try:
        return cls.load(method_dir(bundle_dir, name), settings, resources or Resources(bundle_dir))
    except FileNotFoundError as e:
        raise UserError(
            f"method {name} of {bundle_dir} is incomplete ({e}); rebuild it with `dvc repro tag_eval`"
        ) from None
