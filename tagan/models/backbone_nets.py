"""The backbones' torch networks: EfficientNet-Lite0 (offline) and torchvision models, their ONNX export and the
check of a runtime's features against torch's (tagan.models.backbones builds a Backbone from them).

Only a backbone without a recorded runtime check (the first run, a torchvision model, runtime torch, CUDA) loads
this module and torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tagan.errors import UserError
from tagan.models.backbones import (
    MIN_COSINE,
    ONNX_OPSET,
    Backbone,
    cache_dir,
    engine_threads,
    lite0_weights,
    onnxruntime_engine,
    openvino_engine,
    pil_transform,
    record_verified,
)

log = logging.getLogger(__name__)


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


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    weights = str(lite0_weights())
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return _LiteFeatures(_fuse_lite_bn(model.eval()))


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


def attach_runtime(backbone: Backbone, runtime: str) -> Backbone:
    """Run `backbone` with `runtime` (onnxruntime | openvino): export, load, and check it against torch."""
    path = export_onnx(backbone.net, backbone.name, backbone.image_size)
    threads = engine_threads()
    make = {"onnxruntime": onnxruntime_engine, "openvino": openvino_engine}[runtime]
    try:
        engine = make(path, threads)
    except UserError:
        raise
    except Exception as e:  # a corrupt cached file: export again once
        log.warning("%s cannot load %s (%s); exporting again", runtime, path, e)
        path.unlink(missing_ok=True)
        engine = make(export_onnx(backbone.net, backbone.name, backbone.image_size), threads)
    probe = (
        np.random.default_rng(0)
        .normal(0, 1, (2, 3, backbone.image_size, backbone.image_size))
        .astype(np.float32)
    )
    reference = backbone(probe)  # (2, dim) torch
    got = engine(probe)
    cos = (reference * got).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    if got.shape != reference.shape or not np.all(cos >= MIN_COSINE):
        raise UserError(
            f"runtime {runtime} gives other features than torch for {backbone.name} (cosine {np.round(cos, 5)}); "
            f"delete {path} and retry, or choose runtime torch"
        )
    backbone.runtime, backbone.engine = runtime, engine
    record_verified(backbone, path, float(cos.min()))
    log.info("backbone %s runs on %s with %s threads (cosine to torch %.5f)", backbone.name, runtime, threads,
             float(cos.min()))  # fmt: skip
    return backbone


def build_torch_backbone(name: str, device: str, image_size: int, fit: str, runtime: str) -> Backbone:
    """The backbone's torch network on `device`, run by torch or (`runtime` onnxruntime | openvino) by its export
    after the check against torch."""
    if name == "efficientnet_lite0":
        net, mean, std = _efficientnet_lite0(), [0.5] * 3, [0.5] * 3
    else:
        net, mean, std = _torchvision(name)
    net = net.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        probe = torch.zeros(1, 3, image_size, image_size, device=device)
        dim = int(net(probe.contiguous(memory_format=torch.channels_last)).shape[1])
    log.info("backbone %s: %d-d features at %d px on %s", name, dim, image_size, device)
    backbone = Backbone(name, dim, image_size, pil_transform(image_size, mean, std, fit), net, device)
    return attach_runtime(backbone, runtime) if runtime != "torch" else backbone
