"""Evaluation metrics behave as their definitions say."""

from __future__ import annotations

import torch

from stylepipe.evaluate import colour_histogram_distance, colour_transfer, ssim_luminance, style_separation
from stylepipe.models.adain import mean_std


def test_identical_images_have_zero_distance_and_full_ssim():
    img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert colour_histogram_distance(img, img) == 0.0
    assert ssim_luminance(img, img) == 1.0


def test_histogram_distance_separates_colours():
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    blue = torch.zeros(3, 8, 8)
    blue[2] = 1.0
    assert colour_histogram_distance(red, blue) > 0.6


def test_style_separation_detects_a_collapsed_decoder():
    content_row = [torch.full((3, 8, 8), 0.5)] * 3  # every style gives the same image
    assert style_separation([content_row]) == 0.0
    varied = [[torch.full((3, 8, 8), v) for v in (0.1, 0.5, 0.9)]]
    assert style_separation(varied) > 0.5


def test_colour_transfer_matches_style_statistics():
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(3, 16, 16, generator=g) * 0.5, torch.rand(3, 16, 16, generator=g) * 0.3 + 0.4
    out = colour_transfer(content, style)
    o_mean, _ = mean_std(out[None])
    s_mean, _ = mean_std(style[None])
    assert torch.allclose(o_mean, s_mean, atol=0.02)
