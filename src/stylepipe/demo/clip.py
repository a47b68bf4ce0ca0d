"""The project's own short source clip: a deterministic Ken-Burns pan and zoom over one photo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def load_source_image(path: Path | None = None) -> Image.Image:
    """The clip's photo: `path` if given, else scikit-image's astronaut (bundled, offline)."""
    if path is not None:
        with Image.open(path) as img:
            return img.convert("RGB")
    from skimage import data

    return Image.fromarray(data.astronaut()).convert("RGB")


def _box(t: float, src_w: int, src_h: int, aspect: float, zoom: tuple[float, float]) -> tuple[float, ...]:
    """Crop box at time t in [0, 1]: zoom from zoom[0] to zoom[1], panning left to right."""
    base_w = min(src_w, src_h * aspect)
    scale = zoom[0] + (zoom[1] - zoom[0]) * t
    w, h = base_w / scale, base_w / scale / aspect
    x0, y0 = (src_w - w) * t, (src_h - h) * (0.25 + 0.5 * t)
    return (x0, y0, x0 + w, y0 + h)


def ken_burns(
    image: Image.Image | np.ndarray,
    frames: int,
    size: tuple[int, int],
    zoom: tuple[float, float] = (1.0, 1.4),
) -> Iterator[np.ndarray]:
    """Yield `frames` RGB uint8 frames of shape (height, width, 3); size is (width, height)."""
    img = Image.fromarray(np.asarray(image)) if isinstance(image, np.ndarray) else image.convert("RGB")
    width, height = size
    for i in range(frames):
        t = i / max(frames - 1, 1)
        box = _box(t, img.width, img.height, width / height, zoom)
        yield np.asarray(img.resize((width, height), Image.Resampling.BILINEAR, box=box))
