"""Image grids and tensor <-> PIL conversion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylepipe.core.io import atomic_path


def to_pil(img: torch.Tensor) -> Image.Image:
    """[3,H,W] float in [0,1] -> RGB PIL image."""
    arr = (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def grid_image(rows: Sequence[torch.Tensor | Sequence[torch.Tensor]], pad: int = 4) -> Image.Image:
    """Rows of equally sized [3,H,W] images (a batch tensor or a list per row) on a white canvas."""
    rows = [list(r) for r in rows]
    h, w = rows[0][0].shape[1:]
    n_cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (n_cols * (w + pad) + pad, len(rows) * (h + pad) + pad), "white")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas.paste(to_pil(img), (pad + j * (w + pad), pad + i * (h + pad)))
    return canvas


def save_grid(rows: Sequence[torch.Tensor | Sequence[torch.Tensor]], path: Path) -> Path:
    with atomic_path(path) as tmp:
        grid_image(rows).save(tmp, format="PNG")
    return path
