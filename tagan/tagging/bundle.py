"""The tagger bundle: one typed contract (`Bundle`, info.json) written by tag_eval and read by tagan.tagging.tagger.Tagger.

A bundle directory holds `info.json` (a `Bundle`: the full feature-extraction config, every method's
decoding settings and the test metrics those settings produced), `index/` (the training-tag TagIndex),
`open/` and `vocabulary/` (the open vocabulary's TagIndex and WordNet data, when built), `imagenet_head.npz`
(the backbone's ImageNet classifier, for the posterior-based methods), `prior.json`, `knn.npz`,
`classifier.pt`, `regressor.pt`, `zeroshot.npz` and `cgan_<preset>.pt`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tagan import config
from tagan.errors import UserError
from tagan.files import read_json, save_npz, write_json
from tagan.tagging.baselines import Baselines
from tagan.tagging.features import FeatureConfig
from tagan.tagging.index import TagIndex
from tagan.utils import save_checkpoint

BUNDLE_VERSION = 2
Kind = Literal[
    "prior", "knn", "classifier", "regressor", "zeroshot", "cgan", "imagenet_names", "conse", "wordnet"
]


@dataclass
class Decoding:
    """How one method turns features into ranked tags: exactly the settings its test metrics were scored with."""

    kind: Kind
    file: str = ""  # its weights in the bundle (cgan_strong.pt, classifier.pt, ...)
    vocabulary: Literal["tags", "open"] = "tags"  # the index it decodes over
    samples: int = 1  # generated vectors per image (cgan)
    neighbors: int = 1  # words each generated vector votes for (cgan, regressor)
    weighted: bool = False  # votes weighted by cosine (cgan)
    top: int = 10  # classes that vote (zeroshot, conse)
    beta: float = 1.0  # wordnet: specificity exponent
    gamma: float = 1.0  # wordnet: word-frequency exponent
    # open cgan: its image-feature branch is on for an image whose cosine to the nearest training image is at least
    # this (the branch knows only the training collection's domain); 0 = always on, above 1 = never
    feature_gate: float = 2.0

    def __post_init__(self) -> None:
        for key in ("samples", "neighbors", "top"):
            config.positive(key, getattr(self, key))


@dataclass
class Bundle:
    """info.json of a tagger bundle."""

    dataset: str
    features: FeatureConfig  # how the training features were extracted (the CLI extracts the same way)
    feature_dim: int
    vocab_size: int  # training tags
    embedding_dim: int
    methods: dict[str, Decoding]
    aliases: dict[str, str] = field(default_factory=dict)  # cgan -> the default CGAN method
    open_vocab_size: int = 0  # 0 = no open vocabulary in this bundle
    params: dict[str, Any] = field(default_factory=dict)  # tag_eval's params
    test_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # clip-art test split, per method
    version: int = BUNDLE_VERSION

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = config.to_dict(self.features)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Bundle:
        """Validate info.json: a bundle of another version or with unknown fields is a UserError."""
        if d.get("version") != BUNDLE_VERSION:
            raise UserError(
                f"tagger bundle version {d.get('version')} is not {BUNDLE_VERSION}; rebuild it with `dvc repro tag_eval`"
            )
        try:
            methods = {k: config.from_dict(Decoding, v, f"methods.{k}") for k, v in d["methods"].items()}
            feats = config.from_dict(FeatureConfig, d["features"], "features")
            rest = {k: v for k, v in d.items() if k not in ("methods", "features")}
            return cls(features=feats, methods=methods, **rest)
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


def write_baselines(
    out: Path, index: TagIndex, baselines: Baselines, regressor_neighbors: int
) -> dict[str, Decoding]:
    """prior.json, knn.npz, classifier.pt, regressor.pt, zeroshot.npz and the ImageNet head; their Decodings."""
    write_json(out / "prior.json", {w: int(c) for w, c in zip(index.words, baselines.prior)})
    save_npz(
        out / "knn.npz",
        features=baselines.knn_features,
        tags=baselines.knn_tags.astype(np.uint8),
        k=np.array(baselines.knn_k),
    )
    for name in ("classifier", "regressor"):
        model = getattr(baselines, name)
        save_checkpoint(out / f"{name}.pt", model.cfg.to_dict(), model.state_dict())
    methods = {
        "prior": Decoding("prior", "prior.json"),
        "knn": Decoding("knn", "knn.npz"),
        "classifier": Decoding("classifier", "classifier.pt"),
        "regressor": Decoding("regressor", "regressor.pt", neighbors=regressor_neighbors),
    }
    zs = baselines.zeroshot
    if zs is not None:
        save_npz(out / "zeroshot.npz", class_to_tag=zs.class_to_tag, top_classes=np.array(zs.top_classes))
        save_npz(out / "imagenet_head.npz", weight=zs.weight, bias=zs.bias)
        methods["zeroshot"] = Decoding("zeroshot", "zeroshot.npz", top=zs.top_classes)
    return methods


def fresh_bundle_dir(out: Path, index: TagIndex, open_dir: Path | None, vocabulary_dir: Path | None) -> Path:
    """Create `out` afresh with the training-tag index and, when given, the open index and vocabulary files."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index.save(out / "index")
    if open_dir is not None:
        shutil.copytree(open_dir, out / "open")
    if vocabulary_dir is not None:
        (out / "vocabulary").mkdir()
        for name in ("words.jsonl", "synset_words.json", "imagenet.json"):
            if (Path(vocabulary_dir) / name).is_file():
                shutil.copyfile(Path(vocabulary_dir) / name, out / "vocabulary" / name)
    return out
