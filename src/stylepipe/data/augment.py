"""Colour augmentation of training batches: new palettes from few images.

The embedded sample has a handful of photos and paintings, so a decoder trained on them learns their
palettes rather than how to follow any style's statistics. Rotating each image's hue about the grey axis,
scaling its saturation and its contrast gives every step palettes no training image has, on any device,
as one batched matrix product; grey stays grey.
"""

from __future__ import annotations

import math

import torch

from stylepipe.core.colour import LUMA

GREY_AXIS = torch.full((3,), 1.0 / math.sqrt(3.0))


def hue_rotations(angles: torch.Tensor) -> torch.Tensor:
    """Rodrigues rotations by `angles` [N] (radians) about the grey axis: [N, 3, 3]."""
    k = GREY_AXIS.to(angles)
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]]).to(angles)
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    return cos * torch.eye(3).to(angles) + sin * cross + (1 - cos) * torch.outer(k, k)


def saturation_matrices(factors: torch.Tensor) -> torch.Tensor:
    """Blend towards (factor < 1) or away from (> 1) each pixel's luminance: [N, 3, 3]."""
    grey = torch.tensor(LUMA).to(factors).expand(3, 3)
    f = factors[:, None, None]
    return f * torch.eye(3).to(factors) + (1 - f) * grey


def jitter_colours(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> the same images with random hue (up to +-strength x 180 degrees),
    saturation (x 2^+-strength) and contrast (x 2^+-strength/2 about the mean); strength 0 returns them."""
    if strength == 0:
        return images
    n = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (high - low) + low).to(images.device, torch.float32)

    angles = uniform(-math.pi * strength, math.pi * strength)
    saturation = torch.exp2(uniform(-strength, strength))
    contrast = torch.exp2(uniform(-strength / 2, strength / 2))[:, None, None, None]
    colour = saturation_matrices(saturation) @ hue_rotations(angles)
    flat = images.float().flatten(2)
    mixed = (colour @ flat).view_as(images)
    mean = mixed.mean(dim=(1, 2, 3), keepdim=True)
    return ((mixed - mean) * contrast + mean).clamp(0.0, 1.0).to(images.dtype)
