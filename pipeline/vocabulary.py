"""Stage vocabulary: the open decode vocabulary (WordNet nouns, ImageNet lemmas and their broader words, training tags).

Writes words.jsonl (word, WordNet sense, Zipf frequency, sources, hypernym chain), synset_words.json (the
word naming each synset) and imagenet.json (the 1000 ImageNet classes: senses, lemmas, ancestors).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagan import config, stage
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.files import read_json, write_json
from tagan.tagging.vocabulary import build_vocabulary, imagenet_classes
from tagan.tagging.wordnet import DEBIAN_WORDNET, imagenet1k_wnids, load_wordnet

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `vocabulary`."""

    size: int = 20000  # frequent WordNet nouns kept besides the forced ImageNet / hypernym / training words
    min_zipf: float = 1.0  # wordfreq Zipf frequency floor for those nouns (3 = once per million words)
    max_tokens: int = 3  # longest phrase kept ("golden retriever": 2)
    hypernym_min_zipf: float = 2.5  # broader words above ImageNet classes kept when at least this frequent
    hypernym_hops: int = 12  # how far up a word's hypernym chain is kept (its broader tags)
    imagenet: bool = True  # force the ImageNet-1k class lemmas and their broader words in
    wordnet_dir: Path = DEBIAN_WORDNET  # Debian wordnet-base
    cache_dir: Path = Path(".cache/wordnet")  # nltk reads a copy of the WordNet files from here

    def __post_init__(self) -> None:
        for key in ("max_tokens", "hypernym_hops"):
            config.positive(key, getattr(self, key))
        config.check(self.size >= 0, "size", f"must be >= 0, got {self.size}")


def run(
    cfg: Params, runtime: Runtime, tags_path: Path, out_dir: Path, *, metrics_path: Path | None = None
) -> dict[str, Any]:
    """Build the vocabulary from WordNet + wordfreq + ImageNet + the training tags; write it to `out_dir`."""
    del runtime  # no tensors here
    t0 = time.perf_counter()
    if not Path(tags_path).is_file():
        raise UserError(f"{tags_path} not found; build it with `dvc repro tags_data`")
    tags = list(read_json(tags_path)["tags"])
    wn = load_wordnet(cfg.cache_dir, cfg.wordnet_dir)
    wnids = imagenet1k_wnids() if cfg.imagenet else []
    classes = imagenet_classes(wn, wnids) if wnids else None
    vocab = build_vocabulary(
        wn, size=cfg.size, min_zipf=cfg.min_zipf, max_tokens=cfg.max_tokens,
        hypernym_min_zipf=cfg.hypernym_min_zipf, hypernym_hops=cfg.hypernym_hops,
        imagenet_wnids=wnids, settings=classes.settings if classes is not None else (), training_tags=tags,
    )  # fmt: skip
    vocab.save(out_dir)
    if classes is not None:
        write_json(Path(out_dir) / "imagenet.json", classes.to_json())
    first = Counter(e.sources[0] for e in vocab.entries)
    metrics = {
        "size": len(vocab),
        **{f"words_{s}": first.get(s, 0) for s in ("imagenet", "hypernym", "setting", "training", "wordnet")},
        "classes_with_setting": sum(bool(w) for w in classes.settings) if classes is not None else 0,
        "training_tags": len(tags),
        "with_synset": sum(e.synset is not None for e in vocab.entries),
        "named_synsets": len(vocab.synset_words),
        "mean_broader_words": float(np.mean([len(vocab.broader(w)) for w in vocab.words])),
        "phrases": sum(" " in e.word for e in vocab.entries),
        "min_zipf_wordnet": min((e.zipf for e in vocab.entries if e.sources == ["wordnet"]), default=0.0),
        "seconds": time.perf_counter() - t0,
    }
    log.info("vocabulary: %s", metrics)
    if metrics_path:
        write_json(metrics_path, metrics)
    return metrics


def main() -> None:
    stage.main(run, Params, "vocabulary")


if __name__ == "__main__":
    main()
