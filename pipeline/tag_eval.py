"""Stage tag_eval: the tag CGANs against every baseline on the test split; writes reports and the tagger bundle.

Methods: cgan_<preset> (paper decoding: samples/neighbors/top_k from params), cgan_<preset>_tuned
(neighbours and vote weighting chosen on val), prior (train tag frequency), knn (cosine tag
transfer, k chosen on val), classifier (MLP, BCE), regressor (feature -> mean tag vector, same
decoding), zeroshot (the backbone's ImageNet classes mapped to tags). With the open vocabulary:
cgan_open (the open CGAN), imagenet_names, conse and wordnet (tagan.tagging.open_vocab), each decoding over the
open index, scored here through the bundle's Tagger. The group split is the headline; baselines are also
scored on the by-image split (`image_split.*`). Every bundled method carries the decoding of its row.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagan import config, stage
from tagan.config import Runtime
from tagan.evaluation.reports import write_reports
from tagan.evaluation.scoring import add_prior_margins, evaluate_cgan, score
from tagan.files import write_json
from tagan.tagging.baselines import Baselines, fit_baselines, load_zeroshot, predict_baselines
from tagan.tagging.bundle import Bundle, Decoding, fresh_bundle_dir, write_baselines
from tagan.tagging.features import feature_config
from tagan.tagging.index import TagIndex, Tags, read_tag_data
from tagan.tagging.tagger import Tagger
from tagan.utils import load_checkpoint, seed_everything, set_threads

log = logging.getLogger(__name__)
SPLIT_PREFIX = {"split": "", "split_image": "image_split."}


@dataclass
class Params:
    """params.yaml `tag_eval`."""

    samples: int = 100  # the paper's decoding: generated vectors per image
    neighbors: int = 20  # nearest words each generated vector votes for
    top_k: int = 10  # tags kept per image
    tuned_samples: int = 500  # cgan_*_tuned: more samples per image (the vote ranking converges)
    tuned_neighbors: list[int] = field(default_factory=lambda: [1, 2, 3, 5, 10, 20])  # searched on val
    knn_k: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20, 40])  # searched on val
    mlp_hidden: int = 512
    mlp_epochs: int = 40
    mlp_lr: float = 1e-3
    mlp_weight_decay: float = 1e-4
    mlp_dropout: float = 0.5
    zeroshot_top_classes: int = 5
    zeroshot_tags_per_class: int = 5
    zeroshot_fallback: Literal["minilm", "glove"] = "minilm"  # maps ImageNet class names to tag words
    image_split: bool = True  # also score the baselines on the by-image split
    conse_top: int = 10  # conse: classes in the convex combination (chosen on the photo val split)
    wordnet_beta: float = 0.0  # wordnet: specificity exponent (chosen on the photo val split)
    wordnet_gamma: float = 0.0  # wordnet: word-frequency exponent (chosen on the photo val split)
    open_samples: int = 100  # cgan_open: hard samples per image
    open_neighbors: int = 1  # cgan_open: words each sample votes for
    open_feature_gate: float = 0.55  # cgan_open: feature branch on when cosine to a training image >= this
    default_method: str = "cgan_open"  # what `--method cgan` serves (falls back to cgan_strong_tuned)
    examples: int = 12  # test images in reports/tag_examples.*
    seed: int = 0

    def __post_init__(self) -> None:
        for key in (
            "samples",
            "tuned_samples",
            "neighbors",
            "top_k",
            "mlp_hidden",
            "mlp_epochs",
            "mlp_lr",
            "zeroshot_top_classes",
            "zeroshot_tags_per_class",
            "conse_top",
            "open_samples",
            "open_neighbors",
        ):
            config.positive(key, getattr(self, key))
        config.check(self.top_k >= 5, "top_k", f"must be >= 5 (P@5 is the headline), got {self.top_k}")
        config.check(bool(self.knn_k) and min(self.knn_k) > 0, "knn_k", "must be a non-empty list of k > 0")
        config.check(
            bool(self.tuned_neighbors) and min(self.tuned_neighbors) > 0,
            "tuned_neighbors",
            "must be a non-empty list of values > 0",
        )
        config.in_range("mlp_dropout", self.mlp_dropout, 0.0, 0.99)
        config.check(self.examples >= 0, "examples", f"must be >= 0, got {self.examples}")


def run(
    cfg: Params,
    runtime: Runtime,
    items_path: Path,
    vocab_path: Path,
    features_path: Path,
    embeddings_dir: Path,
    cgan_paths: dict[str, Path],
    bundle_dir: Path,
    reports_dir: Path,
    *,
    open_cgan: Path | None = None,
    vocabulary_dir: Path | None = None,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Score every method; write reports_dir/tag_eval_table.md, tag_examples.{md,png} and the bundle."""
    t0 = time.perf_counter()
    set_threads(runtime.num_threads)
    seed_everything(cfg.seed)
    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(embeddings_dir)
    zeroshot = load_zeroshot(
        data.backbone,
        index.words,
        fallback=cfg.zeroshot_fallback,
        tags_per_class=cfg.zeroshot_tags_per_class,
        top_classes=cfg.zeroshot_top_classes,
    )
    cgans: dict[str, dict[str, Any]] = {}
    for preset, path in cgan_paths.items():
        if Path(path).exists():
            cgans[preset] = load_checkpoint(path)
        else:
            log.warning("no CGAN checkpoint %s; cgan_%s skipped", path, preset)

    flat: dict[str, float] = {}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    bundled: dict[str, tuple[Path, Decoding]] = {}
    headline: tuple[Baselines, Any, dict[str, Tags]] | None = None  # group split: baselines, test rows, tags
    columns = ["split"] + (["split_image"] if cfg.image_split and "split_image" in data.split else [])
    for column in columns:
        train, val, test = (data.rows(s, column) for s in ("train", "val", "test"))
        if min(len(train), len(val), len(test)) == 0:
            log.warning("%s: an empty train/val/test split; skipped", column)
            continue
        results: dict[str, dict[str, float]] = {}
        preds: dict[str, Tags] = {}
        if column == "split":  # the CGANs are scored on the headline split only
            for preset, ckpt in cgans.items():
                ms, tuned, tags = evaluate_cgan(
                    ckpt, index, data, val, test, samples=cfg.samples, neighbors=cfg.neighbors,
                    top_k=cfg.top_k, tuned_samples=cfg.tuned_samples, tuned_neighbors=cfg.tuned_neighbors,
                    seed=cfg.seed,
                )  # fmt: skip
                for suffix in ms:
                    results[f"cgan_{preset}{suffix}"] = ms[suffix]
                    preds[f"cgan_{preset}{suffix}"] = tags[suffix]
                file = f"cgan_{preset}.pt"
                bundled[f"cgan_{preset}"] = (
                    Path(cgan_paths[preset]),
                    Decoding("cgan", file, samples=cfg.samples, neighbors=cfg.neighbors),
                )
                bundled[f"cgan_{preset}_tuned"] = (
                    Path(cgan_paths[preset]),
                    Decoding("cgan", file, samples=cfg.tuned_samples, neighbors=tuned["neighbors"],
                             weighted=bool(tuned["weighted"])),
                )  # fmt: skip
        baselines = fit_baselines(
            data, index, train, val, knn_grid=cfg.knn_k, mlp_hidden=cfg.mlp_hidden, mlp_epochs=cfg.mlp_epochs,
            mlp_lr=cfg.mlp_lr, mlp_weight_decay=cfg.mlp_weight_decay, mlp_dropout=cfg.mlp_dropout,
            seed=cfg.seed, zeroshot=zeroshot,
        )  # fmt: skip
        baseline_preds = predict_baselines(
            baselines, data.features[test], index, top_k=cfg.top_k, neighbors=cfg.neighbors
        )
        preds.update(baseline_preds)
        results.update({name: score(tags, data, test, len(index)) for name, tags in baseline_preds.items()})
        results["knn"]["k"] = baselines.knn_k
        tables[column] = results
        for name, m in results.items():
            for key, value in m.items():
                flat[f"{SPLIT_PREFIX[column]}{name}.{key}"] = float(value)
        if column == "split":
            headline = (baselines, test, preds)
    if headline is None:
        raise ValueError(
            "the group split has an empty train, val or test part; check tags_data's split fractions"
        )
    baselines, test, examples = headline
    flat["vocab_size"] = len(index)
    flat["test_images"] = len(test)

    open_dir = Path(embeddings_dir) / "open"
    has_open = open_dir.is_dir() and vocabulary_dir is not None and baselines.zeroshot is not None
    out = fresh_bundle_dir(
        bundle_dir, index, open_dir if has_open else None, vocabulary_dir if has_open else None
    )
    methods = write_baselines(out, index, baselines, cfg.neighbors)
    for name, (path, decoding) in bundled.items():
        shutil.copyfile(path, out / decoding.file)
        methods[name] = decoding
    if has_open:
        methods["imagenet_names"] = Decoding("imagenet_names", vocabulary="open")
        methods["conse"] = Decoding("conse", vocabulary="open", top=cfg.conse_top)
        methods["wordnet"] = Decoding(
            "wordnet", vocabulary="open", beta=cfg.wordnet_beta, gamma=cfg.wordnet_gamma
        )
        if open_cgan is not None and Path(open_cgan).is_file():
            shutil.copyfile(open_cgan, out / "cgan_open.pt")
            methods["cgan_open"] = Decoding(
                "cgan", "cgan_open.pt", vocabulary="open", samples=cfg.open_samples, neighbors=cfg.open_neighbors,
                feature_gate=cfg.open_feature_gate,
            )  # fmt: skip
    served = [m for m in (cfg.default_method, "cgan_strong_tuned", *bundled) if m in methods]
    bundle = Bundle(
        dataset="tags_data", features=feature_config(features_path, data.backbone),
        feature_dim=int(data.features.shape[1]), vocab_size=len(index), embedding_dim=index.dim,
        methods=methods, aliases={"cgan": served[0]} if served else {},
        open_vocab_size=len(TagIndex.load(open_dir)) if has_open else 0, params=config.to_dict(cfg),
    )  # fmt: skip
    bundle.save(out)
    scored_here = {"imagenet_names", "conse", "wordnet", "cgan_open"} & set(methods)
    for name in sorted(scored_here):  # the open methods are scored through the bundle's own Tagger
        tags = Tagger.load(out, name).tag(data.features[test], top_k=cfg.top_k, seed=cfg.seed)
        tables["split"][name] = score(tags, data, test, len(index))
        examples[name] = tags
        for key, value in tables["split"][name].items():
            flat[f"{name}.{key}"] = float(value)
    add_prior_margins(tables["split"], examples, data, test, cfg.seed)
    for name, m in tables["split"].items():
        for key in ("p_at_5_vs_prior", "p_at_5_vs_prior_lo", "p_at_5_vs_prior_hi"):
            if key in m:
                flat[f"{name}.{key}"] = float(m[key])
    bundle.test_metrics = {n: {k: float(x) for k, x in m.items()} for n, m in tables["split"].items()}
    bundle.save(out)
    flat["seconds"] = time.perf_counter() - t0
    write_reports(
        reports_dir, tables, data, test, examples,
        samples=cfg.samples, neighbors=cfg.neighbors, top_k=cfg.top_k, examples=cfg.examples, seed=cfg.seed,
    )  # fmt: skip
    log.info("tag_eval headline: %s", {n: round(m["p_at_5"], 3) for n, m in tables["split"].items()})
    if metrics_path:
        write_json(metrics_path, flat)
    return flat


def main() -> None:
    stage.main(run, Params, "tag_eval")


if __name__ == "__main__":
    main()
