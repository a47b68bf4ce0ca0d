"""One luminance: BT.601 weights, the same for a network's tensors and for numpy images of any layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylepipe.core.colour import LUMA, luminance


def test_weights_are_bt601_and_white_stays_white() -> None:
    assert LUMA == (0.299, 0.587, 0.114)
    assert luminance(torch.ones(1, 3, 2, 2)).allclose(torch.ones(1, 1, 2, 2))
    assert np.allclose(luminance(np.full((2, 2, 3), 255.0, np.float32)), 255.0, atol=1e-4)


def test_every_layout_gives_the_same_luminance() -> None:
    g = torch.Generator().manual_seed(0)
    batch = torch.rand(2, 3, 5, 7, generator=g)
    pure_green = luminance(torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1))
    assert pure_green.item() == pytest.approx(0.587)
    from_tensor = luminance(batch)[:, 0].numpy()
    chw = np.stack([luminance(img.numpy(), channel_axis=0) for img in batch])
    hwc = luminance(batch.permute(0, 2, 3, 1).numpy())
    assert from_tensor.shape == chw.shape == hwc.shape == (2, 5, 7)
    assert np.allclose(from_tensor, chw, atol=1e-6) and np.allclose(chw, hwc, atol=1e-6)


def test_a_tensor_has_its_channels_on_axis_one() -> None:
    with pytest.raises(ValueError, match="channels on axis 1"):
        luminance(torch.rand(1, 4, 4, 3), channel_axis=3)
