"""The CGAN methods (registered kinds): `cgan` (a tag CGAN's samples vote for their nearest training tags) and
`cgan_open` (the open CGAN's hard samples vote over the open vocabulary, with the feature gate).

A `cgan` method's fit reads a trained checkpoint and, given a neighbours grid, chooses the decoding
(neighbours, vote weighting) on the val rows: the paper's decoding and the val-tuned one are two settings of it.
`cgan` runs its generator in torch (imported when it loads); `cgan_open` serves its G in numpy
(tagan.tagging.open_decoder) from `generator.npz`, so the default method imports no torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagan.errors import UserError
from tagan.files import save_npz
from tagan.tagging.index import TagData, TagIndex, Tags, decode_votes
from tagan.tagging.methods.base import FitContext, Method, Resources, VoteMethod, register_method
from tagan.tagging.open_decoder import OpenDecoder

if TYPE_CHECKING:
    import torch

    from tagan.models.tag_cgan import Generator

log = logging.getLogger(__name__)


def tune_decoding(
    generated_val: torch.Tensor, index: TagIndex, data: TagData, val: np.ndarray, *, neighbors_grid: list[int],
    top_k: int,
) -> dict[str, Any]:  # fmt: skip
    """Neighbours per sample and vote weighting with the best val P@5 (generated_val: (B, S, D))."""
    from tagan.evaluation.scoring import score  # scipy: fitting only

    best: dict[str, Any] = {}
    for weighted in (False, True):
        for nb in neighbors_grid:
            tags = decode_votes(generated_val, index, neighbors=nb, top_k=top_k, weighted=weighted)
            p5 = score(tags, data, val, len(index))["p_at_5"]
            log.info("val decoding neighbors=%d weighted=%s: P@5 %.4f", nb, weighted, p5)
            if p5 > best.get("val_p_at_5", -1.0):
                best = {"neighbors": nb, "weighted": weighted, "val_p_at_5": p5}
    return best


def generator_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The part of a training checkpoint a method serves: its config and the generator's weights."""
    return {"config": ckpt["config"], "state_dict": {"generator": ckpt["state_dict"]["generator"]}}


@dataclass
class CGANSettings:
    samples: int = 100  # generated vectors per image
    neighbors: int = 20  # nearest words each votes for
    weighted: bool = False  # votes weighted by cosine


@register_method("cgan")
class CGAN(VoteMethod):
    """A tag CGAN (tagan.models.tag_cgan): `samples` generated tag vectors per image vote for their nearest tags."""

    Settings = CGANSettings

    def __init__(self, settings: Any, resources: Resources, ckpt: dict[str, Any]) -> None:
        from tagan.models.tag_cgan import load_generator  # torch

        super().__init__(settings, resources)
        self.ckpt = generator_checkpoint(ckpt)
        self.g: Generator = load_generator(self.ckpt)

    @classmethod
    def fit(
        cls, ctx: FitContext, *, checkpoint: Path, neighbors_grid: list[int] | None = None, top_k: int = 10,
        **options: Any,
    ) -> CGAN:  # fmt: skip
        """Serve a trained checkpoint; with `neighbors_grid`, the neighbours and weighting are chosen on val."""
        import torch

        from tagan.models.tag_cgan import sample
        from tagan.utils import load_checkpoint

        index, ckpt = ctx.resources.index(), load_checkpoint(checkpoint)
        if ckpt["config"].get("vocab") not in (None, index.words):
            raise UserError(
                "a CGAN checkpoint was trained on another vocabulary; re-run `dvc repro tag_cgan`"
            )
        method = cls(cls.Settings(**options), ctx.resources, ckpt)
        if neighbors_grid:
            x_val = torch.from_numpy(ctx.data.features[ctx.val])
            best = tune_decoding(
                sample(method.g, x_val, method.settings.samples, ctx.seed), index, ctx.data, ctx.val,
                neighbors_grid=neighbors_grid, top_k=top_k,
            )  # fmt: skip
            method = method.variant(neighbors=best["neighbors"], weighted=bool(best["weighted"]))
            method.fit_report = {
                "neighbors": best["neighbors"], "weighted": int(best["weighted"]), "samples": method.settings.samples,
            }  # fmt: skip
        return method

    def save(self, directory: Path) -> None:
        from tagan.utils import save_checkpoint

        save_checkpoint(Path(directory) / "generator.pt", self.ckpt["config"], self.ckpt["state_dict"])

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> CGAN:
        from tagan.utils import load_checkpoint

        return cls(settings, resources, load_checkpoint(Path(directory) / "generator.pt"))

    def generate(self, features: np.ndarray, seed: int = 0) -> torch.Tensor:
        import torch

        from tagan.models.tag_cgan import sample

        return sample(self.g, torch.from_numpy(features), self.settings.samples, seed)  # (B, S, D)

    def describe(self, features: np.ndarray, seed: int = 0) -> dict[str, float]:
        """A tuned CGAN reports its chosen decoding; the paper's decoding its samples' diversity."""
        if self.fit_report:
            return dict(self.fit_report)
        gen = self.generate(np.asarray(features, dtype=np.float32), seed)  # (B, S, D)
        _, nearest = self.index.search(gen.reshape(-1, self.index.dim).numpy(), 1)
        from tagan import metrics  # scipy: describing only

        return metrics.sample_diversity(gen.numpy(), nearest.reshape(len(features), self.settings.samples))


@dataclass
class OpenCGANSettings:
    samples: int = 100  # hard samples per image
    neighbors: int = 1  # words each sample votes for
    feature_gate: float = (
        2.0  # feature branch on when the cosine to a training image >= this (0 always, 2 never)
    )
    expected: bool = False  # rank by expected votes over the noise draws instead of hard-sample counts


@register_method("cgan_open")
class OpenCGAN(Method):
    """The open tag CGAN (tagan.models.open_cgan): hard samples over the open vocabulary, gated image features."""

    vocabulary = "open"
    Settings = OpenCGANSettings

    def __init__(
        self, settings: Any, resources: Resources, ckpt: dict[str, Any], gate_features: np.ndarray
    ) -> None:
        super().__init__(settings, resources)
        self.ckpt, self.gate_features = generator_checkpoint(ckpt), gate_features  # (N, F) training features
        self.decoder = OpenDecoder.load(self.ckpt, self.index, resources.head(), gate_features)

    @classmethod
    def fit(cls, ctx: FitContext, *, checkpoint: Path, **options: Any) -> OpenCGAN:
        """Serve a trained checkpoint; the training images' features are the feature gate's domain."""
        from tagan.utils import load_checkpoint  # torch: fitting only

        gate_features = ctx.data.features[ctx.train].astype(np.float32)
        return cls(cls.Settings(**options), ctx.resources, load_checkpoint(checkpoint), gate_features)

    def save(self, directory: Path) -> None:
        """generator.npz: the checkpoint's config (JSON) and G's weights as arrays (`g.` + state dict key)."""
        weights = {f"g.{k}": np.asarray(v) for k, v in self.ckpt["state_dict"]["generator"].items()}
        save_npz(
            Path(directory) / "generator.npz", config=np.array(json.dumps(self.ckpt["config"])), **weights
        )
        save_npz(Path(directory) / "gate.npz", features=self.gate_features)

    @classmethod
    def load(cls, directory: Path, settings: Any, resources: Resources) -> OpenCGAN:
        with np.load(Path(directory) / "generator.npz") as z:
            weights = {k[2:]: z[k] for k in z.files if k.startswith("g.")}
            ckpt = {"config": json.loads(str(z["config"])), "state_dict": {"generator": weights}}
        with np.load(Path(directory) / "gate.npz") as z:
            return cls(settings, resources, ckpt, z["features"])

    def tag(
        self, features: np.ndarray, *, top_k: int = 10, seed: int = 0, allowed: set[str] | None = None
    ) -> Tags:
        s = self.settings
        return self.decoder.tag(
            np.asarray(features, dtype=np.float32), samples=s.samples, neighbors=s.neighbors, top_k=top_k,
            seed=seed, allowed=allowed, feature_gate=s.feature_gate, expected=s.expected,
        )  # fmt: skip
