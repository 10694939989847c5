"""Backbone runtimes: ONNX Runtime and OpenVINO give torch's features (cosine >= 0.999 per photo), export cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.image_features import Params
from tagan.config import ParamsError, from_dict
from tagan.errors import UserError
from tagan.models.backbone_nets import export_onnx
from tagan.models.backbones import build_backbone, resolve_runtime
from tagan.tagging.features import extract_features


def sample_photos(root: Path) -> list[Path]:
    """Real photographs that ship offline (scikit-learn's temple and flower, and crops of them) as JPEG files."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # (427, 640, 3) each
    arrays = [*photos, *(a[y : y + 240, x : x + 320] for a in photos for y, x in ((0, 0), (180, 300)))]
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        paths.append(root / f"photo{i}.jpg")
        Image.fromarray(a).save(paths[-1], quality=90)
    return paths


def features(paths: list[Path], runtime: str) -> np.ndarray:
    backbone = build_backbone("efficientnet_lite0", "cpu", runtime=runtime)
    assert backbone.runtime == runtime
    return np.stack(
        [e.feature for e in extract_features(paths, backbone, batch_size=4, workers=0)]
    )  # (N, 1280)


@pytest.mark.slow
def test_cpu_runtimes_match_torch_per_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGAN_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    paths = sample_photos(tmp_path / "photos")
    reference = features(paths, "torch")
    for runtime in ("onnxruntime", "openvino"):
        got = features(paths, runtime)
        cos = (reference * got).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1))
        assert cos.min() >= 0.999, (runtime, cos)


def test_export_is_cached_by_weights_and_a_broken_cache_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGAN_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    backbone = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    path = export_onnx(backbone.net, backbone.name, 64)
    assert path.parent == tmp_path / "cache" / "onnx" and path.name.startswith("efficientnet_lite0-64px")
    stamp = path.stat().st_mtime_ns
    x = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    first = backbone(x)
    again = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again
    np.testing.assert_allclose(again(x), first, rtol=1e-5, atol=1e-5)
    path.write_bytes(b"half a file")  # e.g. a disk that filled up
    redone = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    np.testing.assert_allclose(redone(x), first, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch_features = backbone.net(
            torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        ).numpy()
    np.testing.assert_allclose(first, torch_features, rtol=1e-3, atol=1e-3)


def test_runtime_choice_is_explicit() -> None:
    assert resolve_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_runtime("auto", "cuda") == "torch"
    assert resolve_runtime("openvino", "cpu") == "openvino"
    with pytest.raises(UserError, match="runs on the CPU"):  # never a silent switch to another runtime
        resolve_runtime("onnxruntime", "cuda")
    with pytest.raises(UserError, match="unknown runtime"):
        resolve_runtime("tensorrt", "cpu")
    with pytest.raises(ParamsError, match="image_features.runtime"):
        from_dict(Params, {"runtime": "tensorrt"}, "image_features")


def test_load_backbone_runs_the_runtime_of_the_feature_config() -> None:
    # the image_features stage, photo_eval and the CLI build the backbone here: a bundle extracted with
    # ONNX Runtime must be served by ONNX Runtime (the CLI once silently fell back to torch, 0.65x the speed)
    from tagan.tagging.features import FeatureConfig, load_backbone

    for runtime in ("torch", "onnxruntime"):
        assert load_backbone(FeatureConfig(image_size=64, runtime=runtime), "cpu").runtime == runtime
    assert load_backbone(FeatureConfig(image_size=64, runtime="auto"), "cpu").runtime == "onnxruntime"


@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("size", [(320, 213), (213, 320), (320, 320), (257, 256), (300, 240), (224, 224)])
def test_transform_is_torchvisions_bit_for_bit(fit: str, size: tuple[int, int]) -> None:
    from torchvision import transforms as T

    from tagan.models.backbones import pil_transform

    image = Image.fromarray(
        np.random.default_rng(sum(size)).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    )
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    if fit == "pad":
        ours = pil_transform(224, mean, std, "pad")(image)
        square = Image.new("RGB", (max(size),) * 2, (255, 255, 255))
        square.paste(image, ((max(size) - size[0]) // 2, (max(size) - size[1]) // 2))
        resize = [T.Resize((224, 224), interpolation=T.InterpolationMode.BILINEAR)]
        image = square
    else:
        ours = pil_transform(224, mean, std, "crop")(image)
        resize = [T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224)]
    theirs = T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])(image)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (3, 224, 224)
    assert torch.equal(torch.from_numpy(ours), theirs)


def test_a_recorded_runtime_check_skips_torch_until_the_export_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGAN_CACHE_DIR", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    checked = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    assert checked.net is not None
    (record,) = (tmp_path / "cache" / "onnx").glob("*.verified.json")
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    fast = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    assert fast.net is None and fast.dim == checked.dim == 1280  # torch's network never loaded
    np.testing.assert_array_equal(fast(x), checked(x))
    (onnx,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    onnx.write_bytes(onnx.read_bytes() + b"\0")  # another export than the one checked: checked again
    assert build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime").net is not None
    onnx.write_bytes(b"half a file")  # corrupt: exported again, checked again, recorded again
    again = build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime")
    assert again.net is not None
    np.testing.assert_allclose(again(x), checked(x), rtol=1e-5, atol=1e-5)
    assert build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime").net is None
    record.write_text("not json")  # an unreadable record: checked again
    assert build_backbone("efficientnet_lite0", "cpu", image_size=64, runtime="onnxruntime").net is not None
