"""MNIST classifier: a small CNN whose penultimate features also serve the GANs' Frechet distance."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tagan.errors import UserError
from tagan.utils import load_checkpoint


@dataclass
class ClassifierConfig:
    """Shape of the classifier (stored in its checkpoint)."""

    channels: tuple[int, int] = (32, 64)  # conv widths of the two blocks
    hidden: int = 128  # penultimate feature size F
    dropout: float = 0.25
    num_classes: int = 10


class MnistClassifier(nn.Module):
    """Two conv-BN-ReLU-pool blocks and one hidden layer; input (B, 1, 28, 28) floats in [0, 1]."""

    def __init__(self, *, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ClassifierConfig()
        c1, c2 = cfg.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2, bias=False),  # (B, c1, 28, 28)
            nn.BatchNorm2d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5, padding=2, bias=False),  # (B, c2, 14, 14)
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (B, c2, 7, 7)
            nn.Flatten(),  # (B, c2 * 49)
            nn.Linear(c2 * 49, cfg.hidden),  # (B, F)
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.num_classes))  # (B, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, F) of images (B, 1, 28, 28) in [0, 1]."""
        return self.body((x - 0.1307) / 0.3081)  # MNIST pixel mean / std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 10)."""
        return self.head(self.features(x))


@torch.inference_mode()
def infer(
    model: MnistClassifier, images: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (N, F) and logits (N, 10) of images (N, 28, 28): uint8, or floats in [0, 1]."""
    images = np.asarray(images)
    scale = 1 / 255 if images.dtype == np.uint8 else 1.0
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start : start + batch_size], device=device).float().mul_(scale)
        f = model.features(x.reshape(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last))  # (B, F)
        feats.append(f.float().cpu())
        logits.append(model.head(f).float().cpu())  # (B, 10)
    model.train(was_training)
    if not feats:
        return np.zeros((0, model.config.hidden), np.float32), np.zeros(
            (0, model.config.num_classes), np.float32
        )
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def load_classifier(path: Path | str, device: torch.device | str = "cpu") -> MnistClassifier:
    """The trained classifier from its checkpoint, in eval mode on `device`."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        fields = {f.name for f in dataclasses.fields(ClassifierConfig)}
        model_cfg = {k: v for k, v in ckpt["config"]["model"].items() if k in fields}
        model_cfg["channels"] = tuple(model_cfg["channels"])
        model = MnistClassifier(config=ClassifierConfig(**model_cfg))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise UserError(
            f"{path} is not an mnist_classifier checkpoint ({e}); rebuild it with `dvc repro mnist_classifier`"
        ) from None
    return model.to(device, memory_format=torch.channels_last).eval()
