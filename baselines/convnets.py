"""The convolutional encoder and decoder shared by the image baselines (VAE, autoencoder,
GAN generator): two stride-2 stages from ``(C, H, W)`` down to ``(4w, H/4, W/4)`` and back,
with a 3x3 convolution at each resolution. Heights and widths must be multiples of 4
(8x8 digits, 28x28 Fashion-MNIST, 32x32 CIFAR-10).
"""

from __future__ import annotations

from torch import nn

from gmbench.datasets import DatasetInfo
from gmbench.errors import ModelError

__all__ = ["conv_decoder", "conv_encoder", "fits", "require_fit"]


def fits(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` is an image ``(C, H, W)`` these networks take."""
    return len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0


def require_fit(info: DatasetInfo, family: str, instead: str) -> None:
    """Refuse a dataset that is not discrete images of a size these networks take, naming
    the baselines to use ``instead``."""
    if not info.is_discrete or info.kind != "image" or not fits(info.shape):
        raise ModelError(f"baselines/{family}.py is for discrete images whose height and "
                         f"width are multiples of 4; {info.name} is not. Use {instead} there.")


def conv_encoder(shape: tuple[int, ...], width: int, n_out: int) -> nn.Sequential:
    """``(n, C, H, W)`` -> ``(n, n_out)``."""
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, width, 3, padding=1), nn.SiLU(),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.SiLU(),
        nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.SiLU(),
        nn.Flatten(), nn.Linear(4 * width * (h // 4) * (w // 4), n_out))


def conv_decoder(latent: int, width: int, shape: tuple[int, ...], c_out: int, *,
                 batch_norm: bool = False) -> nn.Sequential:
    """``(n, latent)`` -> ``(n, c_out, H, W)`` (no output activation); ``batch_norm``: batch
    normalization before every hidden activation, ReLU instead of SiLU (a GAN generator)."""
    _, h, w = shape

    def act(channels: int, *, flat: bool = False) -> list[nn.Module]:
        if not batch_norm:
            return [nn.SiLU()]
        norm = nn.BatchNorm1d(channels) if flat else nn.BatchNorm2d(channels)
        return [norm, nn.ReLU()]

    stem = 4 * width * (h // 4) * (w // 4)
    return nn.Sequential(
        nn.Linear(latent, stem), *act(stem, flat=True),
        nn.Unflatten(1, (4 * width, h // 4, w // 4)),
        nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), *act(2 * width),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), *act(2 * width),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), *act(width),
        nn.Conv2d(width, width, 3, padding=1), *act(width),
        nn.Conv2d(width, c_out, 3, padding=1))
