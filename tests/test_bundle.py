"""The tagger bundle contract: the CLI extracts features exactly as the pipeline did, and answers in real-world words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli
from pipeline.image_features import Params as FeatureParams
from pipeline.image_features import run as extract
from tagan.config import Runtime
from tagan.errors import UserError
from tagan.tagging import methods
from tagan.tagging.bundle import Bundle, fresh_bundle_dir
from tagan.tagging.features import feature_config, load_features
from tagan.tagging.index import TagIndex


def tiny_bundle(root: Path, features_path: Path) -> Path:
    """A bundle serving the prior over 3 words, carrying the FeatureConfig of `features_path`."""
    out = fresh_bundle_dir(root / "bundle", TagIndex(["red", "green", "blue"], np.eye(3)))
    prior = methods.get_method("prior")
    entry = methods.save_method(
        out, "prior", prior(prior.Settings(), methods.Resources(out), np.array([3, 2, 1]))
    )
    cfg = feature_config(features_path, "efficientnet_lite0")
    Bundle("test", cfg, 1280, 3, 3, {"prior": entry}).save(out)
    return out


def test_cli_extracts_features_exactly_as_the_pipeline_did(tmp_path: Path) -> None:
    """Non-default extraction params (input 96 px, pad to square, decode at most 128 px) travel in the bundle."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        path = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (240 + 40 * i, 320, 3), dtype=np.uint8)).save(path, quality=90)
        items.append({"id": f"i{i}", "path": str(path), "tags": ["red"], "split": "train", "group": "g"})
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    cfg = FeatureParams(image_size=96, fit="pad", max_side=128, batch_size=2, num_shards=1)
    extract(cfg, Runtime(num_threads=1, workers=0), tmp_path / "items.jsonl", tmp_path / "feat",
            tmp_path / "m.json", resume_dir=tmp_path / "resume")  # fmt: skip
    ids, rows = load_features(tmp_path / "feat" / "features.npz")
    bundle = tiny_bundle(tmp_path, tmp_path / "feat" / "features.npz")
    loaded = Bundle.load(bundle)
    assert (loaded.features.image_size, loaded.features.fit, loaded.features.max_side) == (96, "pad", 128)
    args = cli.build_parser().parse_args(
        [
            "tag",
            "--model",
            str(bundle),
            "--method",
            "prior",
            "--workers",
            "0",
            "--device",
            "cpu",
            str(tmp_path),
        ]
    )
    session = cli.open_session(args)
    got = {
        str(e.path): e.feature for e in cli.photo_features(session, [Path(it["path"]) for it in items], args)
    }
    for image_id, row in zip(ids, rows):
        path = items[int(image_id[1:])]["path"]
        np.testing.assert_allclose(got[path], row, rtol=1e-4, atol=1e-4)  # that image's row of features.npz


def test_bundle_info_is_validated(tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path, tmp_path / "none" / "features.npz")
    info = json.loads((bundle / "info.json").read_text())
    info["methods"]["prior"]["samples"] = 0  # a field a method entry does not have
    (bundle / "info.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="malformed"):
        Bundle.load(bundle)
    del info["methods"]["prior"]["samples"]
    info["methods"]["prior"]["settings"] = {"samples": 0}  # a setting the prior does not have
    (bundle / "info.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="malformed"):
        methods.load_method(bundle, "prior")
    info["version"] = 2
    (bundle / "info.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="rebuild"):
        Bundle.load(bundle)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").exists(), reason="Debian wordnet-base missing")
def test_cli_tags_a_real_photo_with_a_real_world_word_absent_from_the_training_tags(tmp_path: Path) -> None:
    """A bundle built by the stages (real WordNet + ImageNet vocabulary, tiny tag data), then `tagan tag` on
    scikit-image's cat photo: a word the accepted-word rule accepts and no training tag (the tags are
    generic topic words here) comes out, and its WordNet path too."""
    import skimage.data

    from pipeline.open_cgan import Params as OpenParams
    from pipeline.open_cgan import run as train_open
    from pipeline.tag_cgan import Params as CGANParams
    from pipeline.tag_cgan import run as train_cgan
    from pipeline.tag_embeddings import Params as EmbParams
    from pipeline.tag_embeddings import run as embed
    from pipeline.tag_eval import Params as EvalParams
    from pipeline.tag_eval import run as evaluate
    from pipeline.vocabulary import Params as VocabParams
    from pipeline.vocabulary import run as build_vocab
    from tagan.config import from_dict
    from tagan.evaluation.accepted import accepted_words, is_accepted
    from tagan.evaluation.photo_choices import PhotoChoices
    from tagan.evaluation.photo_set import Photo
    from tagan.tagging.open_cgan import OpenTrainConfig
    from tagan.tagging.tagger import Tagger
    from tagan.tagging.wordnet import load_wordnet
    from tests.tag_fixtures import make_tag_data, tiny_tag_cgan_params
    from tests.test_cli import run_cli

    paths = make_tag_data(tmp_path / "data", dim=1280)
    with np.load(paths["features"]) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(paths["features"], **{**arrays, "backbone": np.array("efficientnet_lite0")})
    runtime = Runtime(num_threads=1)
    cache = tmp_path / "wordnet"
    build_vocab(VocabParams(size=0, cache_dir=cache), runtime, paths["vocab"], tmp_path / "vocabulary")
    embed(
        EmbParams(dim=8, epochs=5),
        runtime,
        paths["items"],
        paths["vocab"],
        tmp_path / "emb",
        tmp_path / "vocabulary",
    )
    tiny = from_dict(CGANParams, tiny_tag_cgan_params(train={"steps": 10, "log_every": 5}), "tag_cgan.paper")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
        train_cgan(tiny, runtime, "paper", paths["items"], paths["vocab"], paths["features"],
                   tmp_path / "emb", tmp_path / "paper.pt", tmp_path / "paper.csv")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tagan.training.RESUME_DIR", tmp_path / "resume")
        open_cfg = OpenParams(
            train=OpenTrainConfig(loss="hinge", batch_size=16, steps=20, checkpoint_every=0)
        )
        train_open(open_cfg, runtime, paths["items"], paths["vocab"], paths["features"], tmp_path / "emb",
                   tmp_path / "vocabulary", tmp_path / "open.pt", tmp_path / "open.csv")  # fmt: skip
    cfg = EvalParams(samples=8, mlp_epochs=2, knn_k=[1], tuned_neighbors=[1], examples=0, image_split=False,
                     chosen=PhotoChoices(min_score=0.0, max_entropy=7.0))  # fmt: skip
    evaluate(cfg, runtime, paths["items"], paths["vocab"], paths["features"], tmp_path / "emb",
             {"paper": tmp_path / "paper.pt"}, tmp_path / "tagger", tmp_path / "reports",
             open_cgan=tmp_path / "open.pt", vocabulary_dir=tmp_path / "vocabulary")  # fmt: skip
    bundle = Bundle.load(tmp_path / "tagger")
    assert {"imagenet_names", "conse", "wordnet", "cgan_open"} <= set(bundle.methods)
    assert bundle.open_vocab_size > 2000 and bundle.aliases["cgan"] == "cgan_open"

    photo = tmp_path / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    wn = load_wordnet(cache)
    accepted = accepted_words(Photo("skimage/chelsea", "cat", ("tabby.n.01",), None, "skimage.data", ""), wn)
    training = set(json.loads(paths["vocab"].read_text())["tags"])
    for method in ("cgan", "wordnet"):  # the default (the open CGAN) and its training-free baseline
        proc = run_cli("tag", "--model", str(tmp_path / "tagger"), "--method", method, "--format", "json",
                       "--workers", "0", str(photo))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        (record,) = json.loads(proc.stdout)
        words = [t["tag"] for t in record["tags"]]
        good = [w for w in words if is_accepted(w, accepted, wn) and w not in training]
        assert good, (method, words)  # e.g. tabby, feline, domestic cat
        tagger = Tagger.load(tmp_path / "tagger", method)
        paths = [tagger.path(w) for w in good]  # broad -> specific, [] for a top word such as "animal"
        assert all(p == [] or p[-1] == w for p, w in zip(paths, good)) and any(len(p) > 1 for p in paths), (
            paths
        )
