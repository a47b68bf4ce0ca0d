"""A painting's palette as per-channel quantiles, and histogram matching of an output to it.

AdaIN's decoder sees a painting only through feature mean/std, which carry little of its colour; the
palette is therefore carried beside them (Q quantiles per RGB channel) and applied to the decoded image
by 1-D histogram matching, one channel at a time. Matching is a monotone map of each channel's values, so
equal values stay equal (no speckle in flat regions) and the output's layout is untouched. Quantile
functions are what 1-D optimal transport averages, so mixing styles averages their quantiles.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

QUANTILES = 64  # per channel, at the bin centres (i + 0.5) / Q


def palette_of(image: torch.Tensor, quantiles: int = QUANTILES) -> torch.Tensor:
    """[3, Q] quantiles of each RGB channel of `image` [3, H, W] at the Q bin centres (i + 0.5) / Q."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"palette_of takes an RGB image [3, H, W], got {list(image.shape)}")
    return _quantiles(image.reshape(3, -1).double(), quantiles).float()


def _quantiles(rows: torch.Tensor, quantiles: int) -> torch.Tensor:
    """[R, Q] quantiles of each row of `rows` [R, N] at the bin centres (i + 0.5) / Q, in the rows' dtype
    (float64 for a palette that is stored, float32 on the per-frame path)."""
    probs = (torch.arange(quantiles, dtype=rows.dtype, device=rows.device) + 0.5) / quantiles
    return torch.quantile(rows, probs, dim=1).T.contiguous()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise piecewise-linear interpolation (numpy.interp per row, clamped at both ends): x [R, N] at
    increasing knots xp [R, K] with values fp [R, K]."""
    k = xp.shape[1]
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, k - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    y0, y1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + t * (y1 - y0)


class PaletteMap(NamedTuple):
    """A monotone map of each channel's values: the source image's quantiles `own` [N*3, Q] onto the
    palette's `target` [N*3, Q]. Computed on one frame, it can be applied to others (one map per shot of
    a video keeps the colours of consecutive frames consistent)."""

    own: torch.Tensor
    target: torch.Tensor


def palette_map(image: torch.Tensor, palette: torch.Tensor) -> PaletteMap:
    """The map that takes `image` [N, 3, H, W] onto `palette` [N or 1, 3, Q]."""
    n, c, h, w = image.shape
    flat = image.reshape(n * c, h * w).float()
    target = palette.to(flat).expand(n, c, -1).reshape(n * c, -1)
    return PaletteMap(_quantiles(flat, target.shape[1]), target)


def apply_palette_map(image: torch.Tensor, mapping: PaletteMap, strength: float = 1.0) -> torch.Tensor:
    """`image` [N, 3, H, W] through `mapping`, values between the quantiles linearly (equal values stay
    equal); `strength` blends the mapped image with the input."""
    n, c, h, w = image.shape
    flat = image.reshape(n * c, h * w).float()
    matched = _interp(flat, mapping.own.to(flat), mapping.target.to(flat)).reshape(n, c, h, w).to(image.dtype)
    if strength == 1.0:
        return matched
    return strength * matched + (1.0 - strength) * image


def match_palette(image: torch.Tensor, palette: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Map each channel of `image` [N, 3, H, W] onto `palette` [N or 1, 3, Q]: the image's own Q quantiles
    go to the palette's, values between them linearly (a monotone map of values, so equal values stay
    equal); `strength` blends the matched image with the input."""
    return apply_palette_map(image, palette_map(image, palette), strength)


def palettes_of(images: torch.Tensor, quantiles: int = QUANTILES) -> torch.Tensor:
    """[N, 3, Q] palettes of a batch [N, 3, H, W]."""
    return torch.stack([palette_of(image, quantiles) for image in images.float()])
