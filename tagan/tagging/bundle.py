"""The tagger bundle's contract: `Bundle` (info.json), written once by tag_eval, read by photo_eval and the CLI.

A bundle directory holds
- `info.json`: a `Bundle`: the feature-extraction config, every method's registered kind and decoding
  settings (exactly those its test metrics were scored with), aliases, tag_eval's params, test metrics;
- the parts methods share: `index/` (the training-tag TagIndex), `open/` and `vocabulary/` (the open
  vocabulary's TagIndex and WordNet data, when built), `imagenet_head.npz` (the backbone's ImageNet head);
- `methods/<name>/`: each method's own files, written by its `save` and read by its `load`
  (tagan.tagging.methods).
This module imports no torch: `available(bundle_dir)` lists a bundle's methods cheaply.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagan import config
from tagan.errors import UserError
from tagan.files import read_json, save_npz, write_json
from tagan.tagging.features import FeatureConfig
from tagan.tagging.index import TagIndex
from tagan.tagging.keywords import Keywords

BUNDLE_VERSION = 4
VOCABULARY_FILES = ("words.jsonl", "synset_words.json", "imagenet.json")


@dataclass
class MethodEntry:
    """One method of a bundle: its registered kind and its decoding settings (the kind's Settings, as a dict)."""

    kind: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bundle:
    """info.json of a tagger bundle."""

    dataset: str
    features: FeatureConfig  # how the training features were extracted (the CLI extracts the same way)
    feature_dim: int
    vocab_size: int  # training tags
    embedding_dim: int
    methods: dict[str, MethodEntry]
    aliases: dict[str, str] = field(
        default_factory=dict
    )  # cgan: the default CGAN; default: what `tagan tag` serves
    keywords: Keywords = field(default_factory=Keywords)  # how the default method's ranking becomes keywords
    open_vocab_size: int = 0  # 0 = no open vocabulary in this bundle
    params: dict[str, Any] = field(default_factory=dict)  # tag_eval's params
    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # clip-art test split, per method
    version: int = BUNDLE_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = config.to_dict(self.features)
        d["keywords"] = config.to_dict(self.keywords)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Bundle:
        """Validate info.json: a bundle of another version or with unknown fields is a UserError."""
        if d.get("version") != BUNDLE_VERSION:
            raise UserError(
                f"tagger bundle version {d.get('version')} is not {BUNDLE_VERSION}; rebuild it with `dvc repro tag_eval`"
            )
        try:
            methods = {k: config.from_dict(MethodEntry, v, f"methods.{k}") for k, v in d["methods"].items()}
            feats = config.from_dict(FeatureConfig, d["features"], "features")
            words = config.from_dict(Keywords, d.get("keywords", {}), "keywords")
            rest = {k: v for k, v in d.items() if k not in ("methods", "features", "keywords")}
            return cls(features=feats, methods=methods, keywords=words, **rest)
        except (config.ParamsError, TypeError, KeyError) as e:
            raise UserError(
                f"tagger bundle info.json is malformed ({e}); rebuild it with `dvc repro tag_eval`"
            ) from None

    def save(self, directory: Path) -> None:
        write_json(Path(directory) / "info.json", self.to_json())

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        path = Path(directory) / "info.json"
        if not path.is_file():
            raise UserError(
                f"{directory} is not a tagger bundle (no info.json); build it with `dvc repro tag_eval`"
            )
        return cls.from_json(read_json(path))

    def resolve(self, method: str) -> str:
        """The method an alias stands for; unknown names are a UserError listing the choices."""
        method = self.aliases.get(method, method)
        if method not in self.methods:
            raise UserError(
                f"method {method!r} is not in this bundle; choose one of {', '.join(self.methods)}"
            )
        return method


def available(bundle_dir: Path) -> list[str]:
    """The names a bundle serves: its aliases (`cgan`), then its methods in bundle order (for `--method`)."""
    bundle = Bundle.load(bundle_dir)
    return [*bundle.aliases, *bundle.methods]


def method_dir(bundle_dir: Path, name: str) -> Path:
    """Where method `name` keeps its own files in a bundle."""
    return Path(bundle_dir) / "methods" / name


def fresh_bundle_dir(
    out: Path,
    index: TagIndex,
    *,
    head: tuple[np.ndarray, np.ndarray] | None = None,
    open_dir: Path | None = None,
    vocabulary_dir: Path | None = None,
) -> Path:
    """Create `out` afresh with the parts methods share: the training-tag index and, when given, the backbone's
    ImageNet head, the open index and the open vocabulary's files."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index.save(out / "index")
    if head is not None:
        save_npz(out / "imagenet_head.npz", weight=head[0], bias=head[1])
    if open_dir is not None:
        shutil.copytree(open_dir, out / "open")
    if vocabulary_dir is not None:
        (out / "vocabulary").mkdir()
        for name in VOCABULARY_FILES:
            if (Path(vocabulary_dir) / name).is_file():
                shutil.copyfile(Path(vocabulary_dir) / name, out / "vocabulary" / name)
    return out
