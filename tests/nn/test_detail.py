"""Fine detail: a decoded image gets the content photo's finest luminance edges back, nothing else."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylepipe.nn.detail import high_pass, luminance, restore_fine_detail
from stylepipe.nn.metrics import ssim_luminance


def _photo(seed: int = 0) -> torch.Tensor:
    """[1, 3, 64, 64]: smooth shapes plus pixel-scale texture, as a photo has."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    return (0.8 * coarse + 0.2 * torch.rand(1, 3, 64, 64, generator=g)).clamp(0, 1)


def _decoded(photo: torch.Tensor) -> torch.Tensor:
    """What a decoder drawing on a 4x coarser grid gives: the photo's layout, no pixel detail, other colours."""
    blurred = F.interpolate(F.avg_pool2d(photo, 4), size=photo.shape[-2:], mode="bilinear")
    return (blurred * torch.tensor([0.6, 0.9, 0.4]).view(1, 3, 1, 1) + 0.1).clamp(0, 1)


def test_restored_detail_brings_the_photos_edges_back() -> None:
    photo = _photo()
    out = _decoded(photo)
    restored = restore_fine_detail(out, photo, 1.0).clamp(0, 1)
    half = restore_fine_detail(out, photo, 0.5).clamp(0, 1)
    before, after = ssim_luminance(out[0], photo[0]), ssim_luminance(restored[0], photo[0])
    assert after > before + 0.2, (before, after)
    assert before < ssim_luminance(half[0], photo[0]) < after


def test_only_luminance_detail_is_added_and_colours_stay() -> None:
    photo = _photo(1)
    out = _decoded(photo)
    added = restore_fine_detail(out, photo, 1.0) - out
    assert torch.allclose(added[:, 0], added[:, 1], atol=1e-6) and torch.allclose(added[:, 1], added[:, 2], atol=1e-6)
    assert (added.mean(dim=(2, 3)).abs() < 2e-3).all()  # zero-mean: the palette is not shifted
    blurred_added = F.avg_pool2d(added, 8)
    assert blurred_added.abs().max() < 0.25 * added.abs().max()  # fine scale only: strokes stay


def test_nothing_changes_without_detail_or_where_both_are_flat() -> None:
    photo = _photo(2)
    out = _decoded(photo)
    assert restore_fine_detail(out, photo, 0.0) is out
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(restore_fine_detail(flat * 2, flat, 1.0), flat * 2, atol=1e-6)


def test_high_pass_keeps_the_frame_size_and_borders_stay_below_one_pixel_step() -> None:
    ramp = torch.linspace(0, 1, 40).view(1, 1, 1, 40).repeat(1, 1, 24, 1)
    hp = high_pass(ramp)
    assert hp.shape == ramp.shape
    assert hp[..., 3:-3].abs().max() < 1e-5  # a linear ramp has no detail
    assert hp.abs().max() < 1 / 39  # reflected borders: less than the ramp's own step between two pixels
    assert luminance(torch.ones(1, 3, 4, 4)).allclose(torch.ones(1, 1, 4, 4))
