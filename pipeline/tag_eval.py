"""Stage tag_eval: fits every tagging method, scores it on the test split, writes reports and the tagger bundle.

Methods (registered kinds of tagan.tagging.methods): cgan_<preset> (paper decoding: samples/neighbors/top_k
from params), cgan_<preset>_tuned (neighbours and vote weighting chosen on val), prior, knn (k chosen on
val), classifier, regressor, zeroshot; with the open vocabulary imagenet_names, conse, wordnet and cgan_open
(their decodings chosen on photo_eval's val photos: params.yaml `photo_eval.chosen`).
The group split is the headline; the baselines are also scored on the by-image split (`image_split.*`).
Each method is scored through the object the bundle then serves, written into the bundle once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagan import config, stage
from tagan.config import Runtime
from tagan.evaluation.photo_choices import PhotoChoices
from tagan.evaluation.reports import write_reports
from tagan.evaluation.scoring import add_prior_margins, score
from tagan.files import write_json
from tagan.tagging import methods
from tagan.tagging.baselines import imagenet_head
from tagan.tagging.bundle import Bundle, fresh_bundle_dir
from tagan.tagging.features import feature_config
from tagan.tagging.index import TagIndex, Tags, read_tag_data
from tagan.utils import seed_everything, set_threads

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
    open_samples: int = 100  # cgan_open: hard samples per image
    chosen: PhotoChoices = field(
        default_factory=PhotoChoices
    )  # the open methods' decodings (photo_eval's val grid)
    default_method: str = "cgan_open"  # what `tagan tag` serves (falls back to cgan_strong_tuned)
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
            "open_samples",
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
    """Fit and score every method; write reports_dir/tag_eval_table.md, tag_examples.{md,png} and the bundle.

    `cfg.chosen`: the open methods' decodings picked on photo_eval's val grid.
    """
    chosen = cfg.chosen
    t0 = time.perf_counter()
    set_threads(runtime.num_threads)
    seed_everything(cfg.seed)
    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(embeddings_dir)
    head = imagenet_head(data.backbone)
    open_dir = Path(embeddings_dir) / "open"
    has_open = open_dir.is_dir() and vocabulary_dir is not None and head is not None
    out = fresh_bundle_dir(
        bundle_dir, index, head=head, open_dir=open_dir if has_open else None,
        vocabulary_dir=vocabulary_dir if has_open else None,
    )  # fmt: skip
    resources = methods.Resources(out)

    # name -> (registered kind, fit options): the baselines on every split, the CGANs and open methods on the headline
    # (the bundle serves the methods fitted on the headline split)
    mlp = dict(hidden=cfg.mlp_hidden, epochs=cfg.mlp_epochs, lr=cfg.mlp_lr, weight_decay=cfg.mlp_weight_decay,
               dropout=cfg.mlp_dropout)  # fmt: skip
    baselines: dict[str, tuple[str, dict[str, Any]]] = {
        "prior": ("prior", {}),
        "knn": ("knn", {"k_grid": cfg.knn_k}),
        "classifier": ("classifier", mlp),
        "regressor": ("regressor", {**mlp, "neighbors": cfg.neighbors}),
    }
    if head is not None:
        baselines["zeroshot"] = ("zeroshot", {"fallback": cfg.zeroshot_fallback, "top": cfg.zeroshot_top_classes,
                                              "tags_per_class": cfg.zeroshot_tags_per_class})  # fmt: skip
    cgans: dict[str, tuple[str, dict[str, Any]]] = {}
    for preset, path in cgan_paths.items():
        if not Path(path).exists():
            log.warning("no CGAN checkpoint %s; cgan_%s skipped", path, preset)
            continue
        cgans[f"cgan_{preset}"] = ("cgan", {"checkpoint": path, "samples": cfg.samples,
                                            "neighbors": cfg.neighbors})  # fmt: skip
        cgans[f"cgan_{preset}_tuned"] = ("cgan", {"checkpoint": path, "samples": cfg.tuned_samples,
                                                  "neighbors_grid": cfg.tuned_neighbors, "top_k": cfg.top_k})  # fmt: skip
    opens: dict[str, tuple[str, dict[str, Any]]] = {}
    if has_open:
        opens["imagenet_names"] = ("imagenet_names", {})
        opens["conse"] = ("conse", {"top": chosen.conse_top})
        opens["wordnet"] = ("wordnet", {"beta": chosen.wordnet_beta, "gamma": chosen.wordnet_gamma})
        if open_cgan is not None and Path(open_cgan).is_file():
            opens["cgan_open"] = ("cgan_open", {"checkpoint": open_cgan, "samples": cfg.open_samples,
                                                "neighbors": chosen.open_neighbors,
                                                "feature_gate": chosen.open_feature_gate,
                                                "expected": chosen.open_expected})  # fmt: skip

    flat: dict[str, float] = {}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    fitted: dict[str, methods.Method] = {}  # the headline split's methods: the bundle serves them
    examples: dict[str, Tags] = {}
    columns = ["split"] + (["split_image"] if cfg.image_split and "split_image" in data.split else [])
    for column in columns:
        train, val, test = (data.rows(s, column) for s in ("train", "val", "test"))
        if min(len(train), len(val), len(test)) == 0:
            log.warning("%s: an empty train/val/test split; skipped", column)
            continue
        ctx = methods.FitContext(data, train, val, resources, seed=cfg.seed)
        plan = {**cgans, **baselines, **dict(sorted(opens.items()))} if column == "split" else baselines
        results: dict[str, dict[str, float]] = {}
        preds: dict[str, Tags] = {}
        for name, (kind, options) in plan.items():
            method = methods.get_method(kind).fit(ctx, **options)
            preds[name] = method.tag(data.features[test], top_k=cfg.top_k, seed=cfg.seed)
            results[name] = {**score(preds[name], data, test, len(index)),
                             **method.describe(data.features[test], cfg.seed)}  # fmt: skip
            if column == "split":
                fitted[name] = method
        tables[column] = results
        for name, m in results.items():
            for key, value in m.items():
                flat[f"{SPLIT_PREFIX[column]}{name}.{key}"] = float(value)
        if column == "split":
            examples = preds
    if "split" not in tables:
        raise ValueError(
            "the group split has an empty train, val or test part; check tags_data's split fractions"
        )
    test = data.rows("test")
    flat["vocab_size"] = len(index)
    flat["test_images"] = len(test)
    add_prior_margins(tables["split"], examples, data, test, cfg.seed)
    for name, m in tables["split"].items():
        for key in ("p_at_5_vs_prior", "p_at_5_vs_prior_lo", "p_at_5_vs_prior_hi"):
            if key in m:
                flat[f"{name}.{key}"] = float(m[key])

    entries = {name: methods.save_method(out, name, fitted[name]) for name in (*baselines, *cgans, *opens)}
    served = [m for m in (cfg.default_method, "cgan_strong_tuned", *cgans) if m in entries]
    cgan = [m for m in ("cgan_open", "cgan_strong_tuned", *cgans) if m in entries]
    Bundle(
        dataset="tags_data", features=feature_config(features_path, data.backbone),
        feature_dim=int(data.features.shape[1]), vocab_size=len(index), embedding_dim=index.dim,
        methods=entries, aliases={"default": served[0], "cgan": cgan[0]} if served else {},
        keywords=cfg.chosen.keywords(),
        open_vocab_size=len(resources.index("open")) if has_open else 0, params=config.to_dict(cfg),
        test_metrics={n: {k: float(x) for k, x in m.items()} for n, m in tables["split"].items()},
    ).save(out)  # fmt: skip
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
