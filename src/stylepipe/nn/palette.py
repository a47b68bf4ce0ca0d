"""A painting's palette as per-channel quantiles, and histogram matching of an output to it.

AdaIN's decoder sees a painting only through feature mean/std, which carry little of its colour; the
palette is therefore carried beside them (Q quantiles per RGB channel) and applied to the decoded image
by 1-D histogram matching, one channel at a time. Matching is a monotone map of each channel's values, so
equal values stay equal (no speckle in flat regions) and the output's layout is untouched. Quantile
functions are what 1-D optimal transport averages, so mixing styles averages their quantiles.
"""

from __future__ import annotations

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


def match_palette(image: torch.Tensor, palette: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Map each channel of `image` [N, 3, H, W] onto `palette` [N or 1, 3, Q]: the image's own Q quantiles
    go to the palette's, values between them linearly (a monotone map of values, so equal values stay
    equal); `strength` blends the matched image with the input."""
    n, c, h, w = image.shape
    flat = image.reshape(n * c, h * w).float()
    target = palette.to(flat).expand(n, c, -1).reshape(n * c, -1)
    own = _quantiles(flat, target.shape[1])
    matched = _interp(flat, own, target).reshape(n, c, h, w).to(image.dtype)
    if strength == 1.0:
        return matched
    return strength * matched + (1.0 - strength) * image


def palettes_of(images: torch.Tensor, quantiles: int = QUANTILES) -> torch.Tensor:
    """[N, 3, Q] palettes of a batch [N, 3, H, W]."""
    return torch.stack([palette_of(image, quantiles) for image in images.float()])
