"""The content photo's finest luminance detail, restored on a decoded image.

The decoder draws from the AdaIN layer's grid (a quarter of the resolution at relu3_1), so detail of a
pixel or two (window bars, leaf edges, eyelashes) is beyond it. `restore_fine_detail` adds the difference
between the content's and the output's luminance high-pass (the residual of a Gaussian blur of
`DETAIL_SIGMA` px) to every channel: the photo's fine edges return, while the network's colours and
strokes, which live at coarser scales, stay. It is a fixed separable convolution on one channel, so it
exports to ONNX and runs on the Myriad X inside the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stylepipe.core.colour import LUMA, luminance

__all__ = ["DETAIL_SIGMA", "LUMA", "high_pass", "luminance", "restore_fine_detail"]

DETAIL_SIGMA = 1.0  # px of the output: below the decoder's grid at any image size


def _gaussian_kernel(sigma: float, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    return kernel / kernel.sum(), radius


def high_pass(x: torch.Tensor, sigma: float = DETAIL_SIGMA) -> torch.Tensor:
    """`x` [N, 1, H, W] minus its Gaussian blur (reflect-padded, so borders add no false edges)."""
    kernel, radius = _gaussian_kernel(sigma, x)
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    return x - blurred


def restore_fine_detail(output: torch.Tensor, content: torch.Tensor, weight: float) -> torch.Tensor:
    """`output` with `weight` (0..1) of the content's fine luminance detail in place of its own, on every
    channel; both are [N, 3, H, W] in [0, 1]. Not clamped: the caller clamps once."""
    if weight == 0:
        return output
    return output + weight * high_pass(luminance(content.to(output) - output))
