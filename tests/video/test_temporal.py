"""The warping error, the shot tracker, flow-guided blending and the shift-consistency loss."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from stylepipe.nn.losses import shift_consistency_loss
from stylepipe.nn.temporal import (
    PRESETS,
    Flow,
    Motion,
    ShotTracker,
    blend_previous,
    blend_previous_features,
    lands_inside,
    motion_at,
    spatial_change,
    tracked,
    warp,
    warping_error,
)


def textured(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (float32 [H, W, 3]) that DIS can track."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, h // 8, w // 8), dtype=np.float32))
    fine = nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return fine[0].permute(1, 2, 0).numpy().copy()


def pan(image: np.ndarray, frames: int, step: int, width: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(image[:, t * step : t * step + width]) for t in range(frames)]


def test_warp_brings_a_shifted_frame_back():
    image = textured()
    a, b = image[:, 4:100], image[:, 6:102]  # b shows a's content 2 px to the left
    flow = Flow()(a, b)
    assert np.median(flow[..., 0]) == pytest.approx(-2.0, abs=0.1)
    aligned = warp(b, flow)
    assert np.abs(aligned[:, 8:-8] - a[:, 8:-8]).mean() < 0.01


def test_warping_error_is_low_for_a_pan_and_high_for_flicker():
    frames = pan(textured(), 6, 2, 96)
    clean = warping_error(frames, frames)
    rng = np.random.default_rng(1)
    flicker = [np.clip(f + rng.normal(0, 0.05, f.shape).astype(np.float32), 0, 1) for f in frames]
    assert clean < 1e-3
    assert warping_error(frames, flicker) > 10 * clean


def test_spatial_change_divides_out_what_contrast_adds_to_the_warping_error():
    rng = np.random.default_rng(2)
    # a pan with a little sensor noise, values near [1/3, 2/3]: the clip's own warping error is the noise's
    frames = [f / 3 + 1 / 3 + rng.normal(0, 0.005, f.shape).astype(np.float32) for f in pan(textured(), 6, 2, 96)]
    stretched = [3 * (f - 0.5) + 0.5 for f in frames]  # 3x the contrast, nothing clamped, as steady as the clip
    flickering = [f + rng.normal(0, 0.02, f.shape).astype(np.float32) for f in frames]  # 4x the clip's noise
    own_warp, own_detail = warping_error(frames, frames), spatial_change(frames)

    def per_detail(outputs: list[np.ndarray]) -> float:
        return (warping_error(frames, outputs) / own_warp) / (spatial_change(outputs) / own_detail)

    assert warping_error(frames, stretched) / own_warp == pytest.approx(9.0, rel=1e-3)
    assert per_detail(stretched) == pytest.approx(1.0, rel=1e-3)
    assert per_detail(flickering) > 3.0


def test_spatial_change_refuses_an_empty_clip():
    with pytest.raises(ValueError, match="at least one frame"):
        spatial_change([])


def test_warping_error_refuses_mismatched_clips():
    frames = pan(textured(), 3, 2, 96)
    with pytest.raises(ValueError, match="3 input frames but 2 outputs"):
        warping_error(frames, frames[:2])
    with pytest.raises(ValueError, match="at least two frames"):
        warping_error(frames[:1], frames[:1])
    with pytest.raises(ValueError, match="frame 0: input 96x96 but output 48x48"):
        warping_error(frames, [f[::2, ::2] for f in frames])


def test_shot_tracker_finds_motion_and_cuts():
    track = ShotTracker()
    first, second = pan(textured(seed=0), 2, 2, 96)
    other = textured(seed=5)[:, :96]
    assert track(first) is None  # the first frame starts a shot
    motion = track(second)
    assert motion is not None and motion.reliable.mean() > 0.8
    assert track(other) is None  # unrelated content: a cut


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("scale", [1, 2, 4])
def test_shot_tracker_at_reduced_resolution_gives_full_size_motion(preset, scale):
    first, second = pan(textured(h=128, w=192), 2, 3, 160)  # the content moves 3 px to the left
    track = ShotTracker(PRESETS[preset], scale)
    track(first)
    motion = track(second)
    assert motion is not None
    assert motion.flow.shape == (128, 160, 2) and motion.reliable.shape == (128, 160)
    inner = np.s_[16:-16, 16:-16]
    assert np.median(motion.flow[inner][..., 0]) == pytest.approx(3.0, abs=0.3)  # in full-size pixels
    assert np.abs(warp(first, motion.flow) - second)[inner].mean() < 0.01


def test_shot_tracker_at_reduced_resolution_still_finds_cuts():
    track = ShotTracker(PRESETS["ultrafast"], 4)
    assert track(textured(seed=0)) is None
    assert track(textured(seed=0)) is not None
    assert track(textured(seed=5)) is None


def test_shot_tracker_refuses_unknown_settings():
    with pytest.raises(ValueError, match="DIS preset 7"):
        ShotTracker(7)
    with pytest.raises(ValueError, match="scale 0: expected a whole number >= 1"):
        ShotTracker(scale=0)


def test_blend_previous_pulls_the_output_towards_the_warped_previous_output():
    frames = pan(textured(), 2, 2, 96)
    track = ShotTracker()
    track(frames[0])
    motion = track(frames[1])
    previous = frames[0]
    noisy = np.clip(frames[1] + np.random.default_rng(2).normal(0, 0.05, frames[1].shape), 0, 1).astype(np.float32)
    blended = blend_previous(noisy, previous, motion, 0.5)
    inner = np.s_[8:-8, 8:-8]
    assert np.abs(blended - frames[1])[inner].mean() < 0.7 * np.abs(noisy - frames[1])[inner].mean()
    assert np.array_equal(blend_previous(noisy, previous, None, 0.5), noisy)  # a new shot: the frame's own
    assert np.array_equal(blend_previous(noisy, previous, motion, 0.0), noisy)


def test_pixels_new_in_the_frame_are_not_reliable():
    """A pan brings a strip of new content in at one edge. It has no counterpart in the previous frame, so
    neither a blend (which would repeat the previous frame's edge there: a smear) nor the warping error
    (which would score that smear as steady) counts it."""
    frames = pan(textured(), 2, 4, 96)  # frame 1 shows frame 0's content 4 px to the left, new on the right
    track = ShotTracker()
    track(frames[0])
    motion = track(frames[1])
    assert not motion.reliable[:, -3:].any()
    assert motion.reliable[8:-8, 8:-8].mean() > 0.95
    flow = np.broadcast_to(np.float32([-3, 1]), (8, 12, 2))
    assert (lands_inside(flow) == ((np.arange(12) >= 3)[None] & (np.arange(8) < 7)[:, None])).all()
    smear = [frames[0], warp(frames[0], motion.flow)]  # the previous frame carried along, its edge repeated
    assert warping_error(frames, smear) == pytest.approx(warping_error(frames, frames), abs=1e-5)


def test_motion_at_shrinks_the_flow_and_gives_each_cells_reliable_share():
    flow = np.broadcast_to(np.float32([8, 4]), (64, 96, 2)).copy()
    reliable = np.ones((64, 96), bool)
    reliable[:2, :4] = False  # half of the first 4x4 cell
    coarse = motion_at(Motion(flow, reliable), 16, 24)
    assert coarse.flow.shape == (16, 24, 2) and np.allclose(coarse.flow, [2, 1])
    assert coarse.reliable.dtype == np.float32 and coarse.reliable[0, 0] == 0.5
    assert (coarse.reliable.ravel()[1:] == 1).all()
    same = Motion(flow, reliable)
    assert motion_at(same, 64, 96) is same


def test_blend_previous_features_follows_the_motion_where_it_is_reliable():
    previous = torch.rand(1, 8, 16, 24, generator=torch.Generator().manual_seed(0))
    own = torch.zeros_like(previous)
    share = np.ones((16, 24), np.float32)
    share[:, :4] = 0  # occluded: the frame's own features there
    motion = Motion(np.broadcast_to(np.float32([1, 0]), (16, 24, 2)).copy(), share)  # each cell came from x + 1
    blended = blend_previous_features(own, previous, motion, 0.5)
    torch.testing.assert_close(blended[..., 4:-1], 0.5 * previous[..., 5:])
    assert (blended[..., :4] == 0).all()
    assert blend_previous_features(own, previous, None, 0.5) is own  # a new shot
    assert blend_previous_features(own, None, motion, 0.5) is own
    assert blend_previous_features(own, previous[..., :8], motion, 0.5) is own  # another size: a new shot


class Pointwise(nn.Module):
    """A 1x1 convolution: commutes with every shift."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


class Strided(nn.Module):
    """Stride-2 pooling and nearest upsampling: not stable to a 1-px shift."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(nn.functional.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")


def test_shift_consistency_is_zero_for_an_equivariant_network_and_positive_otherwise():
    content = torch.rand(2, 3, 32, 32)
    pointwise, strided = Pointwise(), Strided()
    equivariant, pooled = [], []
    for seed in range(6):  # several offsets: the equivariant network is exact at each, odd ones break pooling
        equivariant.append(float(shift_consistency_loss(pointwise, content, pointwise(content), 0.0,
                                                        generator=torch.Generator().manual_seed(seed)).detach()))
        pooled.append(float(shift_consistency_loss(strided, content, strided(content), 0.0,
                                                   generator=torch.Generator().manual_seed(seed))))
    assert max(equivariant) < 1e-12
    assert max(pooled) > 1e-3


def test_shift_consistency_noise_penalises_a_network_that_passes_noise_through():
    content = torch.rand(1, 3, 32, 32)
    identity = nn.Identity()
    gen = torch.Generator().manual_seed(0)
    assert float(shift_consistency_loss(identity, content, content, 0.0, generator=gen)) == 0.0
    assert float(shift_consistency_loss(identity, content, content, 0.02, generator=gen)) > 1e-4


def test_shift_consistency_trains_a_network_towards_stability():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                        nn.Conv2d(8, 3, 3, padding=1))
    content = torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(60):
        loss = shift_consistency_loss(net, content, net(content), 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])


def test_shift_consistency_refuses_content_smaller_than_the_grid():
    with pytest.raises(ValueError, match="8x8 is too small"):
        shift_consistency_loss(nn.Identity(), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), 0.0)


def test_shot_tracker_leaves_out_what_a_moving_object_uncovers():
    background, square = textured(seed=0)[:, :96], textured(seed=9)
    frames = []
    for left in (30, 38):  # the square moves 8 px to the right over a still background
        frame = background.copy()
        frame[32:64, left : left + 32] = square[32:64, 32:64]
        frames.append(frame)
    track = ShotTracker()
    track(frames[0])
    motion = track(frames[1])
    assert motion is not None
    uncovered = motion.reliable[36:60, 31:37]  # background in frame 1, under the square in frame 0
    far = motion.reliable[4:24, 4:92]
    assert uncovered.mean() < 0.5 and far.mean() > 0.95, (uncovered.mean(), far.mean())


def test_tracked_gives_each_frame_the_motion_of_serial_tracking():
    frames = pan(textured(w=160), 5, 2, 96)
    serial_tracker, ahead_tracker = ShotTracker(), ShotTracker()
    expected = [serial_tracker(f) for f in frames]
    got = list(tracked(frames, ahead_tracker))
    assert [f is g for f, (g, _) in zip(frames, got, strict=True)] == [True] * 5
    assert got[0][1] is None and expected[0] is None
    for want, (_, motion) in zip(expected[1:], got[1:], strict=True):
        assert motion is not None and np.array_equal(motion.flow, want.flow)
        assert np.array_equal(motion.reliable, want.reliable)


def test_tracked_finds_the_next_motion_while_the_caller_works_on_this_frame():
    second_tracked = threading.Event()

    def track(frame: int) -> None:
        if frame == 1:
            second_tracked.set()

    for frame, _ in tracked(range(3), track):
        if frame == 0:  # serial tracking would only reach frame 1 after this frame's work
            assert second_tracked.wait(timeout=30), "frame 1 was not tracked during frame 0's work"
