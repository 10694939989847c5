"""The photo_eval stage's run on tiny GCompris .rcc files, a miniature WordNet and a two-method bundle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from wordnet_fixtures import SYNSETS, write_wordnet_files

from pipeline.photo_eval import Params, run
from tagan.config import ParamsError, Runtime, from_dict
from tagan.evaluation.photo_set import Label
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle, fresh_bundle_dir
from tagan.tagging.features import FeatureConfig
from tagan.tagging.index import TagIndex
from tests.rcc_fixtures import write_rcc

ACT = "gcompris/src/activities/"
# the miniature WordNet's senses (its sense numbers, not WordNet 3.0's)
LABELS = {"hammer": Label("hammer", ("hammer.n.01",)), "dog": Label("dog", ("dog.n.01",)),
          "cat": Label("cat", ("cat.n.01",)), "tabby": Label("tabby", ("tabby.n.01",)),
          "tower": Label("tower", ("tower.n.01",), "scene"),
          "scratch:Backgrounds/Outdoors/tower-view": Label("tower", ("tower.n.01",), "scene"),
          "scratch:People/amy-1": Label("dog", ("dog.n.01",), "people"),
          "scratch:People/amy-2": Label("dog", ("dog.n.01",), "people")}  # fmt: skip
WORDS = ["dog", "hammer", "tower", "pet"]  # the bundle's training tags


def webp(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
        buf, "WEBP"
    )
    return buf.getvalue()


def tiny_rcc_dir(root: Path) -> Path:
    """The five .rcc files photo_set reads: categorization (tools, monuments), erase (animals), explore_* (none)."""
    root.mkdir(parents=True)
    images = ACT + "categorization/resource/images/"
    cat = {images + "tools/README": b"hammer1.webp: CC0\n", images + "tools/hammer1.webp": webp(0),
           images + "tools/hammer2.webp": webp(1), images + "monuments/tower1.webp": webp(2)}  # fmt: skip
    (root / "categorization.rcc").write_bytes(write_rcc(cat))
    erase = {ACT + "erase/resource/README": b"dog1.webp: CC0\n"}
    erase.update({ACT + f"erase/resource/{name}.webp": webp(3 + i) for i, name in enumerate(
        ["dog1", "dog2", "cat1", "tabby1", "tabby2"])})  # fmt: skip
    (root / "erase.rcc").write_bytes(write_rcc(erase))
    for activity in ("explore_world_animals", "explore_farm_animals", "explore_monuments"):
        (root / f"{activity}.rcc").write_bytes(write_rcc({ACT + f"{activity}/resource/README": b""}))
    return root


def tiny_scratch_media(root: Path) -> Path:
    """Scratch's media layout: one background photo (JPEG) and two cut-outs of one person (GIF, transparent)."""
    (root / "Backgrounds/Outdoors").mkdir(parents=True)
    (root / "Costumes/People").mkdir(parents=True)
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
        root / "Backgrounds/Outdoors/tower-view.jpg"
    )
    for name in ("amy-1", "amy-2"):
        Image.fromarray(rng.integers(0, 255, (40, 20, 4), dtype=np.uint8), "RGBA").save(
            root / f"Costumes/People/{name}.png"
        )
    return root


def tiny_bundle(root: Path) -> Path:
    """A bundle of two methods over WORDS: the prior (dog first) and kNN over random training features."""
    out = fresh_bundle_dir(root, TagIndex(WORDS, np.eye(4)))
    resources = methods.Resources(out)
    prior, knn = methods.get_method("prior"), methods.get_method("knn")
    rng = np.random.default_rng(0)
    fitted = {
        "prior": prior(prior.Settings(), resources, np.array([5, 3, 2, 1])),
        "knn": knn(knn.Settings(), resources, rng.normal(size=(6, 1280)).astype(np.float32), np.eye(6, 4), 2),
    }
    entries = {name: methods.save_method(out, name, m) for name, m in fitted.items()}
    features = FeatureConfig(image_size=64, runtime="torch", max_side=64)
    Bundle("test", features, 1280, len(WORDS), 4, entries).save(out)
    return out


@pytest.mark.skipif(not hasattr(Image, "registered_extensions") or ".webp" not in Image.registered_extensions(),
                    reason="Pillow without WebP")  # fmt: skip
def test_run_scores_every_bundle_method_on_the_photos(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("tagan.evaluation.photo_set.LABELS", LABELS)
    write_wordnet_files(tmp_path / "wn", SYNSETS)
    cfg = Params(rcc_dir=tiny_rcc_dir(tmp_path / "rcc"), scratch_media=tiny_scratch_media(tmp_path / "scratch"),
                 sample_photos=False, val_fraction=0.5, examples=2, synthetic=4, wordnet_dir=tmp_path / "wn",
                 cache_dir=tmp_path / "cache")  # fmt: skip
    bundle = tiny_bundle(tmp_path / "bundle")
    m = run(cfg, Runtime(num_threads=1, workers=0), bundle, tmp_path / "photos", tmp_path / "reports")

    photos = [json.loads(line) for line in (tmp_path / "photos" / "photos.jsonl").read_text().splitlines()]
    assert m["photos"] == len(photos) == 11 and m["photos_gcompris_erase"] == 5 and m["photos_scratch"] == 3
    assert (m["photos_people"], m["photos_scene"], m["photos_other"]) == (2, 2, 7)
    amy = [p for p in photos if p["id"].startswith("scratch/People/")]
    assert len({p["split"] for p in amy}) == 1  # one person's poses never sit on both sides
    assert Image.open(amy[0]["path"]).size == (320, 640)  # a cut-out is shown on white at a photo's size
    with np.load(tmp_path / "photos" / "features.npz") as z:
        assert z["features"].shape == (11, 1280)
        x = z["features"]
    for split in ("val", "test"):
        rows = [i for i, p in enumerate(photos) if p["split"] == split]
        assert rows and m[f"{split}.prior.photos"] == m[f"{split}.knn.photos"] == len(rows)
        # the prior says "dog" first for every photo: hit@1 is the share of photos that accept "dog"
        assert m[f"{split}.prior.hit_at_1"] == pytest.approx(
            np.mean(["dog" in photos[i]["accepted"] for i in rows])
        )
    # each method tags as the bundle serves it: the knn row is its loaded method's tags on the photos' features
    knn_top = [t[0][0] for t in methods.load_method(bundle, "knn").tag(x, top_k=10)]
    test = [i for i, p in enumerate(photos) if p["split"] == "test"]
    hits = np.mean([knn_top[i] in photos[i]["accepted"] for i in test])
    assert m["test.knn.hit_at_1"] == pytest.approx(hits)
    # the specific rule: the label or one step up; "dog" is right for the dog and amy photos, never for the tabby
    specific = np.mean(["dog" in photos[i]["accepted_specific"] for i in test])
    assert m["test.prior.specific_hit_at_10"] >= specific and "animal" not in photos[0]["accepted_specific"]
    # `default` is plain `tagan tag`: the bundle's first method with its keyword rules; noise gets the same
    assert m["test.default.specific_hit_at_10"] == m["test.prior.specific_hit_at_10"]
    assert m["noise.default.keywords_per_image"] == 4.0  # the prior says its 4 words whatever the image
    assert m["test.default.path_depth_max"] == 0.0  # training tags: no hierarchy
    assert m["seconds"] > 0
    table = (tmp_path / "reports" / "photo_eval_table.md").read_text()
    assert (
        "| prior |" in table and "| knn |" in table and "| default |" in table and "Validation grids" in table
    )
    assert (tmp_path / "reports" / "photo_examples.png").stat().st_size > 0


def test_the_chosen_decodings_sit_on_their_val_grid() -> None:
    """photo_eval.chosen (read by tag_eval) must be a point of the grid photo_eval scores on its val photos."""
    assert from_dict(Params, {"chosen": {"conse_top": 5}}, "photo_eval").chosen.conse_top == 5
    with pytest.raises(ParamsError, match=r"photo_eval\.chosen\.conse_top: 7 is not on its val grid"):
        from_dict(Params, {"chosen": {"conse_top": 7}}, "photo_eval")
    with pytest.raises(ParamsError, match=r"photo_eval\.chosen\.open_feature_gate"):
        from_dict(Params, {"chosen": {"open_feature_gate": 0.7}}, "photo_eval")
