"""Palette matching: the output takes the painting's colour distribution and keeps its own layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.exposure import match_histograms

from stylepipe.nn.metrics import colour_histogram_distance
from stylepipe.nn.palette import (
    BINS,
    QUANTILES,
    SORTED,
    _interp,
    _quantiles,
    apply_palette_map,
    match_palette,
    palette_map,
    palette_of,
    palettes_of,
)


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(3, 48, 64, generator=g)
    painting = torch.rand(3, 40, 40, generator=g).pow(3) * torch.tensor([0.9, 0.5, 0.2])[:, None, None]
    return photo, painting


def test_palette_is_each_channels_quantiles() -> None:
    ramp = torch.linspace(0, 1, 1000).reshape(1, 10, 100).repeat(3, 1, 1)
    ramp[2] *= 0.5
    palette = palette_of(ramp, quantiles=4)
    assert palette.shape == (3, 4)
    assert torch.allclose(palette[0], torch.tensor([0.125, 0.375, 0.625, 0.875]), atol=1e-3)
    assert torch.allclose(palette[2], palette[0] * 0.5, atol=1e-3)


def test_palette_of_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        palette_of(torch.rand(1, 3, 8, 8))


def test_matched_output_takes_the_paintings_colours() -> None:
    photo, painting = _images()
    matched = match_palette(photo[None], palette_of(painting)[None])[0]
    assert colour_histogram_distance(photo, painting) > 0.3
    assert colour_histogram_distance(matched, painting) < 0.05
    reference = torch.from_numpy(match_histograms(photo.numpy(), painting.numpy(), channel_axis=0))
    assert (matched - reference).abs().mean() < 0.01  # what skimage's exact matching gives


def test_matching_keeps_the_layout_and_maps_equal_values_together() -> None:
    """A monotone map per channel: the order of values is kept and a flat region stays flat (exact
    rank-based matching would scatter a flat region's pixels over the palette: speckle)."""
    photo, painting = _images(1)
    photo[:, :16, :16] = 0.5
    matched = match_palette(photo[None], palette_of(painting)[None])[0]
    assert matched[:, :16, :16].flatten(1).std(dim=1).max() == 0
    for ch in range(3):
        order = photo[ch].flatten().argsort()
        assert (matched[ch].flatten()[order].diff() >= -1e-6).all()


def test_strength_blends_with_the_input() -> None:
    photo, painting = _images(2)
    palette = palette_of(painting)[None]
    full = match_palette(photo[None], palette)
    assert torch.equal(match_palette(photo[None], palette, 0.0), photo[None])
    assert torch.allclose(match_palette(photo[None], palette, 0.25), 0.25 * full + 0.75 * photo[None])


def test_batch_takes_one_palette_per_image_or_one_for_all() -> None:
    photo, painting = _images(3)
    other = torch.rand(3, 32, 32)
    batch = torch.stack([photo, photo])
    each = match_palette(batch, palettes_of(torch.stack([painting[:, :32, :32], other])))
    assert not torch.allclose(each[0], each[1])
    shared = match_palette(batch, palette_of(painting)[None])
    assert torch.equal(shared[0], shared[1])


def test_palette_interpolation_is_the_mean_of_quantiles() -> None:
    """Mixing a black and a white painting half and half gives mid-grey, not a black-and-white mix."""
    black, white = torch.zeros(3, 8, 8), torch.ones(3, 8, 8)
    mixed = 0.5 * palette_of(black) + 0.5 * palette_of(white)
    out = match_palette(torch.rand(1, 3, 8, 8), mixed[None])
    assert np.allclose(out.numpy(), 0.5)


def test_a_large_frame_is_matched_through_tables_as_closely_as_by_sorting() -> None:
    """Frames of SORTED values and more take the histogram's quantiles and the map's table (linear time): within
    a fraction of an 8-bit level of exact sorting and searching, clamped 0s and 1s counted exactly."""
    g = torch.Generator().manual_seed(4)
    side = int(SORTED**0.5) + 8
    frame = (torch.rand(1, 3, side, side, generator=g) * 1.4 - 0.2).clamp(0, 1)  # 1/7 of each channel at 0, 1/7 at 1
    palette = palette_of(torch.rand(3, 40, 40, generator=g).pow(2))[None]
    mapping = palette_map(frame, palette)
    exact = _quantiles(frame.reshape(3, -1), QUANTILES)
    span = 1 / BINS
    assert (mapping.own - exact).abs().max() < span
    assert torch.equal(mapping.own[:, :9], exact[:, :9])  # the ties at 0 are 0, as a sort puts them
    assert torch.equal(mapping.own[:, -9:], exact[:, -9:])
    matched = apply_palette_map(frame, mapping)
    searched = _interp(frame.reshape(3, -1), exact, palette[0]).reshape(frame.shape)
    assert (matched - searched).abs().mean() < 1e-4
    assert ((matched - searched).abs() > 0.5 / 255).float().mean() < 1e-3  # only just above a tie
    flat = frame.clone()
    flat[..., :40, :40] = 0.5
    assert apply_palette_map(flat, palette_map(flat, palette))[..., :40, :40].flatten(2).std(dim=2).max() == 0
