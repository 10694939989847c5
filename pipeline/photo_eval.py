"""Stage photo_eval: every tagger method of the bundle on labelled real photographs (GCompris, scikit-image/-learn).

The photos are extracted from their Debian / PyPI packages into out/ (never into git), split once into val
(~30%, every choice is made there: see the val grid) and test (the headline), and their features are
extracted with the bundle's own FeatureConfig. Each method, loaded from the bundle by name (tagan.tagging.methods),
tags them with the decoding `tagan tag` uses; a tag counts when the accepted-word rule of tagan.evaluation.photo_set accepts it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagan import config, stage
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.evaluation.photo_choices import PhotoChoices, decoding_grid
from tagan.evaluation.photo_report import report, val_grid
from tagan.evaluation.photo_set import GCOMPRIS_RCC_DIR, build_photo_set, summary, tag_metrics
from tagan.evaluation.reports import examples_grid
from tagan.files import save_npz, write_json, write_text
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle
from tagan.tagging.features import extract_features, load_backbone
from tagan.tagging.wordnet import DEBIAN_WORDNET, load_wordnet
from tagan.utils import resolve_device, set_threads

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `photo_eval`."""

    rcc_dir: Path = GCOMPRIS_RCC_DIR  # Debian gcompris-qt-data
    sample_photos: bool = True  # also the scikit-image / scikit-learn sample photos
    max_hops: int = 8  # accepted-word rule: hypernyms up to this many steps (broad)
    strict_hops: int = 2  # the strict variant reported beside it
    val_fraction: float = 0.3
    seed: int = 0
    methods: list[str] = field(default_factory=list)  # [] = every method of the bundle
    chosen: PhotoChoices = field(
        default_factory=PhotoChoices
    )  # the val grid's choices; tag_eval bundles them
    conse_top_grid: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20])  # val grid (reported)
    wordnet_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0])  # beta and gamma values
    open_neighbors_grid: list[int] = field(default_factory=lambda: [1, 3])
    open_gate_grid: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 0.55, 0.6, 2.0]
    )  # cgan_open feature gate
    examples: int = 16  # test photos in reports/photo_examples.png
    wordnet_dir: Path = DEBIAN_WORDNET
    cache_dir: Path = Path(".cache/wordnet")

    def __post_init__(self) -> None:
        config.positive("max_hops", self.max_hops)
        config.in_range("val_fraction", self.val_fraction, 0.05, 0.95)
        config.check(self.examples >= 0, "examples", f"must be >= 0, got {self.examples}")
        c = self.chosen
        for key, value, grid in (
            ("conse_top", c.conse_top, self.conse_top_grid),
            ("wordnet_beta", c.wordnet_beta, self.wordnet_grid),
            ("wordnet_gamma", c.wordnet_gamma, self.wordnet_grid),
            ("open_neighbors", c.open_neighbors, self.open_neighbors_grid),
            ("open_feature_gate", c.open_feature_gate, self.open_gate_grid),
        ):
            config.check(value in grid, f"chosen.{key}", f"{value} is not on its val grid {grid}")


def run(
    cfg: Params,
    runtime: Runtime,
    bundle_dir: Path,
    out_dir: Path,
    reports_dir: Path,
    *,
    metrics_path: Path | None = None,
) -> dict[str, float]:
    """Build the photo set, extract its features as the bundle does, score every method on val and test."""
    t0 = time.perf_counter()
    set_threads(runtime.num_threads)
    wn = load_wordnet(cfg.cache_dir, cfg.wordnet_dir)
    photos = build_photo_set(
        out_dir, wn, rcc_dir=cfg.rcc_dir, samples=cfg.sample_photos, max_hops=cfg.max_hops,
        strict_hops=cfg.strict_hops, val_fraction=cfg.val_fraction, seed=cfg.seed,
    )  # fmt: skip
    bundle = Bundle.load(bundle_dir)
    backbone = load_backbone(bundle.features, resolve_device(runtime.device))
    feats, keep = [], []
    stream = extract_features(
        [Path(p.path) for p in photos], backbone, batch_size=bundle.features.batch_size, workers=runtime.workers,
        max_side=bundle.features.max_side, max_pixels=bundle.features.max_pixels,
    )  # fmt: skip
    for i, (_, feat, reason) in enumerate(stream):
        if feat is None:
            log.warning("photo %s skipped: %s", photos[i].id, reason)
        else:
            feats.append(feat)
            keep.append(i)
    photos = [photos[i] for i in keep]
    x = np.stack(feats).astype(np.float32)  # (N, F)
    save_npz(Path(out_dir) / "features.npz", ids=np.array([p.id for p in photos]), features=x)
    resources = methods.Resources(bundle_dir)
    training = set(resources.index().words)
    rows = {
        s: np.array([i for i, p in enumerate(photos) if p.split == s], dtype=np.int64)
        for s in ("val", "test")
    }
    if min(len(r) for r in rows.values()) == 0:
        raise UserError("the photo set has an empty val or test split; check photo_eval.val_fraction")
    names = cfg.methods or list(bundle.methods)
    tables: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}, "test_strict": {}}
    preds: dict[str, list[list[str]]] = {}
    for name in names:
        method = methods.load_method(bundle_dir, name, bundle, resources)
        words = [[w for w, _ in t] for t in method.tag(x, top_k=10)]
        preds[name] = words
        for split, r in rows.items():
            tables[split][name] = tag_metrics(
                [words[i] for i in r], [set(photos[i].accepted) for i in r], training, wn
            )
        r = rows["test"]
        tables["test_strict"][name] = tag_metrics(
            [words[i] for i in r], [set(photos[i].accepted_strict) for i in r], training, wn
        )
    grid = val_grid(
        bundle_dir, decoding_grid(cfg.conse_top_grid, cfg.wordnet_grid, cfg.open_neighbors_grid, cfg.open_gate_grid),
        x[rows["val"]], [set(photos[i].accepted) for i in rows["val"]], training, wn,
    )  # fmt: skip
    flat: dict[str, float] = {}
    for split, table in tables.items():
        for name, m in table.items():
            for key, value in m.items():
                flat[f"{split}.{name}.{key}"] = float(value)
    flat["photos"] = float(len(photos))
    flat.update({f"photos_{k.replace(':', '_')}": float(v) for k, v in summary(photos).items()})
    flat["seconds"] = time.perf_counter() - t0
    head = bundle.aliases.get("cgan", names[0])
    head = head if head in preds else names[0]
    write_text(Path(reports_dir) / "photo_eval_table.md", report(tables, grid, photos, head, bundle.aliases))
    r = rows["test"]
    pick = r[np.linspace(0, len(r) - 1, min(cfg.examples, len(r))).astype(int)] if cfg.examples else r[:0]
    examples_grid(
        [photos[i].path for i in pick], [[photos[i].label] for i in pick], [preds[head][i] for i in pick],
        Path(reports_dir) / "photo_examples.png", label=head,
    )  # fmt: skip
    log.info("photo_eval test: %s", {n: round(m["p_at_5"], 3) for n, m in tables["test"].items()})
    if metrics_path:
        write_json(metrics_path, flat)
    return flat


def main() -> None:
    stage.main(run, Params, "photo_eval")


if __name__ == "__main__":
    main()
