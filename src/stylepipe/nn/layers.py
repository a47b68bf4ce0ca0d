"""Network layers shared by the methods' decoders."""

from __future__ import annotations

import torch
from torch import nn


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """2x nearest-neighbour upsampling as a broadcast + reshape, in the input's memory format.

    The same values as F.interpolate(scale_factor=2, mode="nearest"), but its gradient is a plain sum
    over the broadcast dimensions, where the compiled interpolate gradient scatters with atomics (the
    README's performance section gives the cost on a GPU).
    """
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class NearestUp2x(nn.Module):
    """Decoder upsampling: exported as a nearest Resize (what the Myriad X supports), trained and run
    in PyTorch through `upsample_nearest2x`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return upsample_nearest2x(x)
