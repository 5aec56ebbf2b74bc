"""Pictures: a grid of image samples, and a 2-D scatter density, as PNG files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from gmbench.core.files import atomic_write
from gmbench.datasets import DatasetInfo

__all__ = ["image_grid", "pairs_grid", "save_png", "scatter_image"]


def _to_uint8(x: np.ndarray, levels: int | None) -> np.ndarray:
    if levels is not None:
        return np.round(x.astype(np.float64) * (255.0 / (levels - 1))).astype(np.uint8)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def image_grid(x: np.ndarray, info: DatasetInfo, *, columns: int = 8, scale: int | None = None,
               pad: int = 1) -> Image.Image:
    """Tile images ``(n, C, H, W)`` into one picture, upscaled to about 28 pixels per cell."""
    n, c, h, w = x.shape
    scale = scale or max(1, 28 // h)
    rows = math.ceil(n / columns)
    img = _to_uint8(x, info.levels)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 128, np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        canvas[y0:y0 + h, x0:x0 + w] = img[i].transpose(1, 2, 0)
    mode = "L" if c == 1 else "RGB"
    pic = Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode=mode)
    return pic.resize((pic.width * scale, pic.height * scale), Image.Resampling.NEAREST)


def pairs_grid(left: np.ndarray, right: np.ndarray, info: DatasetInfo) -> Image.Image:
    """Rows of (left[i], right[i]) pairs: e.g. a sample beside its nearest training image."""
    n = len(left)
    both = np.empty((2 * n, *left.shape[1:]), dtype=left.dtype)
    both[0::2], both[1::2] = left, right
    return image_grid(both, info, columns=2 * min(4, n))


def scatter_image(points: np.ndarray, *, size: int = 256, extent: float | None = None
                  ) -> Image.Image:
    """A 2-D histogram of ``(n, 2)`` points as a grayscale density picture."""
    lim = extent or float(np.quantile(np.abs(points), 0.995)) * 1.1 or 1.0
    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size,
                                range=[[-lim, lim], [-lim, lim]])
    img = 255 - np.clip(255 * np.sqrt(hist / max(hist.max(), 1)), 0, 255)
    return Image.fromarray(img[::-1].astype(np.uint8), mode="L")


def png_bytes(picture: Image.Image) -> bytes:
    """The picture encoded as PNG."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(picture: Image.Image, path: str | Path) -> None:
    with atomic_write(path, mode="wb") as handle:
        handle.write(png_bytes(picture))
