"""The one definition of luminance: ITU-R BT.601 weights, for the network, the metrics and the data.

The fine-detail step inside the exported graphs, the SSIM of the quality bar, colour augmentation and the
sample paintings all weigh R, G and B the same way, so that "luminance" means one thing everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def luminance(rgb: np.ndarray | torch.Tensor, channel_axis: int | None = None) -> np.ndarray | torch.Tensor:
    """BT.601 luminance of RGB images.

    A torch batch [N, 3, H, W] gives [N, 1, H, W] through a 1x1 convolution, an operator the exported
    graphs and the Myriad X run. A numpy array gives the float32-weighted sum along `channel_axis`
    (default the last, [..., 3] -> [...]; 0 for [3, H, W] -> [H, W])."""
    if isinstance(rgb, np.ndarray):
        weights = np.asarray(LUMA, np.float32)
        if channel_axis is None or channel_axis in (-1, rgb.ndim - 1):
            return rgb @ weights
        return np.tensordot(rgb, weights, axes=([channel_axis], [0]))
    if channel_axis not in (None, 1):
        raise ValueError(f"a tensor batch holds its channels on axis 1 ([N, 3, H, W]), not {channel_axis}")
    import torch  # here: the data stages use only the numpy form
    import torch.nn.functional as F

    return F.conv2d(rgb, torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1))
