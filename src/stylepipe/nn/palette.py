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
import torch.nn.functional as F

QUANTILES = 64  # per channel, at the bin centres (i + 0.5) / Q
# a frame's quantiles and its map are read off tables of this many entries per channel (within a fraction of
# an 8-bit level of the exact ones) instead of a sort and a binary search per value: the per-frame cost.
# Below SORTED values per channel a sort is cheap and keeps the quantiles exact and continuous in the values
# (a table's move when a value crosses a bin edge, up to a bin's width, is only negligible for many values).
BINS = 4096
SORTED = 1 << 16


def palette_of(image: torch.Tensor, quantiles: int = QUANTILES) -> torch.Tensor:
    """[3, Q] quantiles of each RGB channel of `image` [3, H, W] at the Q bin centres (i + 0.5) / Q."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"palette_of takes an RGB image [3, H, W], got {list(image.shape)}")
    return _quantiles(image.reshape(3, -1).double(), quantiles).float()


def _quantiles(rows: torch.Tensor, quantiles: int) -> torch.Tensor:
    """[R, Q] exact quantiles of each row of `rows` [R, N] at the bin centres (i + 0.5) / Q, in the rows'
    dtype (float64 for a palette that is stored)."""
    probs = (torch.arange(quantiles, dtype=rows.dtype, device=rows.device) + 0.5) / quantiles
    return torch.quantile(rows, probs, dim=1).T.contiguous()


def _frame_quantiles(rows: torch.Tensor, quantiles: int) -> torch.Tensor:
    """[R, Q] float32 quantiles of a frame's channels [R, N]: sorted for few values, from a histogram for many."""
    if rows.shape[1] < SORTED:
        return _quantiles(rows.float(), quantiles)
    return _histogram_quantiles(rows, quantiles)


def _histogram_quantiles(rows: torch.Tensor, quantiles: int, bins: int = BINS) -> torch.Tensor:
    """[R, Q] float32 quantiles of each row of `rows` [R, N] at the bin centres (i + 0.5) / Q, read off a
    `bins`-bin histogram of the row's range with its values spread evenly within each bin: linear time
    instead of a sort, within a bin's width of `_quantiles` and usually far closer. The values equal to the
    row's least and greatest (a clamped image's 0s and 1s) are counted at those values exactly, as a sort
    would place them."""
    rows = rows.float()
    r, n = rows.shape
    low, high = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
    at_low = (rows == low).sum(dim=1, keepdim=True)
    at_high = torch.where(high > low, (rows == high).sum(dim=1, keepdim=True), 0)
    width = (high - low).clamp_min(1e-12) / bins
    index = ((rows - low) / width).long().clamp_(0, bins - 1)
    index += torch.arange(r, device=rows.device)[:, None] * bins
    counts = torch.bincount(index.flatten(), minlength=r * bins).reshape(r, bins)
    counts[:, :1] -= at_low
    counts[:, -1:] -= at_high
    inside = at_low + F.pad(counts.cumsum(dim=1), (1, 0))  # [R, bins + 1]: values below each bin edge
    below = torch.cat([torch.zeros_like(at_low), inside, inside[:, -1:] + at_high], dim=1).float()
    edges = low + width * torch.arange(bins + 1, device=rows.device, dtype=rows.dtype)
    edges = torch.cat([low, edges[:, :-1], high, high], dim=1)  # [R, bins + 3], knots of `below`
    probs = (torch.arange(quantiles, device=rows.device, dtype=rows.dtype) + 0.5) / quantiles
    ranks = (probs * (n - 1) + 0.5).expand(r, -1)  # torch.quantile's position p (N - 1), as a count
    return _interp(ranks, below, edges)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Row-wise piecewise-linear interpolation (numpy.interp per row, clamped at both ends): x [R, N] at
    increasing knots xp [R, K] with values fp [R, K]."""
    k = xp.shape[1]
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, k - 1)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    y0, y1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    t = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    return y0 + t * (y1 - y0)


def _lookup(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, size: int = BINS) -> torch.Tensor:
    """`_interp(x, xp, fp)` through a table of each row's map at `size` points from its first knot to its
    last: two gathers and a lerp per value instead of a binary search. Exact between the knots, within a
    quarter of the table's step times the change of slope in the cells that hold one (where knots tie, at a
    clamped image's 0s, the map's jump spreads over one step); still monotone, and equal values stay equal."""
    first, last = xp[:, :1], xp[:, -1:]
    step = (last - first).clamp_min(1e-12) / (size - 1)
    table = _interp(first + step * torch.arange(size, device=x.device, dtype=x.dtype), xp, fp)
    position = ((x - first) / step).clamp_(0, size - 1)
    cell = position.long().clamp_(max=size - 2)
    low, high = table.gather(1, cell), table.gather(1, cell + 1)
    return low + (position - cell) * (high - low)


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
    return PaletteMap(_frame_quantiles(flat, target.shape[1]), target)


def apply_palette_map(image: torch.Tensor, mapping: PaletteMap, strength: float = 1.0) -> torch.Tensor:
    """`image` [N, 3, H, W] through `mapping`, values between the quantiles linearly (equal values stay
    equal); `strength` blends the mapped image with the input."""
    n, c, h, w = image.shape
    flat = image.reshape(n * c, h * w).float()
    matched = _lookup(flat, mapping.own.to(flat), mapping.target.to(flat)).reshape(n, c, h, w).to(image.dtype)
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
