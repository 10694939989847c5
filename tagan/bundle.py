"""The tagger bundle writer: everything tagan.tagger.Tagger (and so the CLI) needs, in one directory."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagan.baselines import Baselines
from tagan.tagging import TagData, TagIndex
from tagan.utils import save_checkpoint, save_npz, write_json

CGAN_METHODS = ("cgan_paper", "cgan_strong")  # the presets a bundle can serve


@dataclass
class BundledCGAN:
    """A CGAN checkpoint to serve, with the decoding tuned on val."""

    path: Path
    decoding: dict[str, Any]  # neighbors, weighted


def write_bundle(
    out: Path,
    index: TagIndex,
    data: TagData,
    baselines: Baselines,
    cgans: dict[str, BundledCGAN],
    *,
    regressor_neighbors: int,
    params: dict[str, Any],
    results: dict[str, dict[str, float]],
) -> None:
    """Write `out` afresh: info.json, index/, prior.json, knn.npz, classifier.pt, regressor.pt, zeroshot.npz
    (when the backbone has a zero-shot head) and cgan_<preset>.pt; `results` are the test metrics per method."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    index.save(out / "index")
    methods = ["prior", "knn", "classifier", "regressor"]
    decoding: dict[str, Any] = {"regressor": {"neighbors": regressor_neighbors}}
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
    zs = baselines.zeroshot
    if zs is not None:
        save_npz(
            out / "zeroshot.npz",
            weight=zs.weight,
            bias=zs.bias,
            class_to_tag=zs.class_to_tag,
            top_classes=np.array(zs.top_classes),
        )
        methods.append("zeroshot")
    for name in CGAN_METHODS:
        if name in cgans:
            shutil.copyfile(cgans[name].path, out / f"{name}.pt")
            methods.append(name)
            decoding[name] = cgans[name].decoding
    served = [m for m in methods if m.startswith("cgan_")]
    aliases = {"cgan": "cgan_strong" if "cgan_strong" in methods else served[0]} if served else {}
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
            "params": params,
            "test_metrics": {n: {k: float(x) for k, x in m.items()} for n, m in results.items()},
        },
    )
