"""The architecture of the bundled classifiers: a small convolutional network.

One network family serves every bundled image dataset; :class:`Architecture` (stored in each
classifier's JSON record) says how wide it is and where it pools, so weights and shape travel
together. The network maps ``(n, C, H, W)`` floats in ``[0, 1]`` to ``(features, logits)``:
``features`` is the penultimate layer (``hidden`` units after ReLU), the feature space of
every sample metric; ``logits`` feed the Inception Score and pseudo-labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "Architecture", "ConvClassifier", "architecture_for"]


@dataclass(frozen=True)
class Architecture:
    """Shape of a :class:`ConvClassifier`.

    Attributes:
        in_shape: ``(C, H, W)`` of one input image.
        channels: output channels of each 3x3 convolution (padding 1, batch norm, ReLU).
        pool: whether a 2x2 max-pool follows each convolution.
        hidden: width of the penultimate layer (the feature dimension).
        num_classes: number of logits.
        dropout: dropout before the last layer while training.
    """

    in_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    pool: tuple[bool, ...]
    hidden: int = 128
    num_classes: int = 10
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        return cls(in_shape=tuple(d["in_shape"]), channels=tuple(d["channels"]),
                   pool=tuple(d["pool"]), hidden=int(d["hidden"]),
                   num_classes=int(d["num_classes"]), dropout=float(d["dropout"]))


ARCHITECTURES: dict[str, Architecture] = {
    # 28x28 -> 14x14 -> 7x7; 3136 -> 128 -> 10 (about 420k parameters, 1.7 MB float32)
    "fashion-mnist": Architecture((1, 28, 28), (32, 64), (True, True)),
    "mnist": Architecture((1, 28, 28), (32, 64), (True, True)),
    # 8x8 -> 8x8 -> 4x4; 1024 -> 128 -> 10
    "digits": Architecture((1, 8, 8), (32, 64), (False, True)),
}


def architecture_for(name: str, shape: tuple[int, ...], num_classes: int) -> Architecture:
    """The bundled architecture of ``name``, else one for images of ``shape``: the same two
    convolutions, each followed by a 2x2 max-pool while the side stays even and at least 8
    (CIFAR-sized 32x32 -> 16x16 -> 8x8; 8x8 -> 8x8 -> 4x4)."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    c, h, w = shape
    pools: list[bool] = []
    for _ in range(2):
        pool = h % 2 == 0 and w % 2 == 0 and min(h, w) >= 8 and (min(h, w) >= 16 or pools)
        pools.append(bool(pool))
        if pool:
            h, w = h // 2, w // 2
    return Architecture((c, shape[1], shape[2]), (32, 64), (pools[0], pools[1]),
                        num_classes=num_classes)


class ConvClassifier(nn.Module):
    """Convolutions, a ReLU penultimate layer of ``hidden`` units, and a linear classifier."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        c, h, w = arch.in_shape
        for out, pool in zip(arch.channels, arch.pool, strict=True):
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.body = nn.Sequential(*layers)
        self.penultimate = nn.Linear(c * h * w, arch.hidden)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(arch.hidden, arch.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``(n, C, H, W)`` in ``[0, 1]``. Returns ``(features (n, hidden),
        logits (n, num_classes))``."""
        z = self.body((x - 0.5) / 0.5).flatten(1)  # (n, c*h*w)
        features = torch.relu(self.penultimate(z))  # (n, hidden)
        return features, self.head(self.dropout(features))
