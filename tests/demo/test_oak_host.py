"""The OAK-1 path's host side: the device's outputs finished on the host (palette match per frame or held per
shot, flow-guided blending along the preview's motion), fed from stand-in device messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stylepipe.core.errors import InputError
from stylepipe.demo.oak import HostFinish, _planar_bgr_to_rgb
from stylepipe.nn.palette import match_palette, palette_of
from stylepipe.nn.temporal import warping_error

H, W = 96, 128


def textured(seed: int, w: int = W + 40) -> np.ndarray:
    """A smooth random RGB texture (float32 [H, w, 3]) that DIS can track."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, H // 8, w // 8), dtype=np.float32))
    fine = nn.functional.interpolate(coarse, size=(H, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return fine[0].permute(1, 2, 0).numpy().copy()


def panned_preview(frames: int, step: int = 2, seed: int = 0) -> list[np.ndarray]:
    """The camera's preview frames (RGB uint8) of a scene panning `step` px per frame."""
    scene = textured(seed)
    return [np.rint(scene[:, t * step : t * step + W] * 255).astype(np.uint8) for t in range(frames)]


def flickering_device(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stand-in for the blob's output [1, 3, H, W]: the frame plus noise that changes every frame."""
    out = frame.astype(np.float32) / 255.0 + rng.normal(0, 0.05, frame.shape).astype(np.float32)
    return np.clip(out, 0, 1).transpose(2, 0, 1)[None]


def bank(styles: int = 2) -> dict:
    rng = torch.Generator().manual_seed(3)
    paintings = torch.rand(styles, 3, 32, 32, generator=rng) ** torch.tensor([0.5, 2.0])[:styles, None, None, None]
    palettes = torch.stack([palette_of(p) for p in paintings]).numpy()
    return {"names": [f"s{i}" for i in range(styles)], "palette": palettes}


def test_without_options_it_is_the_per_frame_palette_match():
    styles, rng = bank(), np.random.default_rng(0)
    finish = HostFinish(styles)
    for t, frame in enumerate(panned_preview(3)):
        output = flickering_device(frame, rng)
        matched = match_palette(torch.from_numpy(output), torch.from_numpy(styles["palette"][t % 2 : t % 2 + 1]))
        expected = (np.clip(matched.numpy()[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(finish(frame, output, t % 2), expected.transpose(1, 2, 0))


def test_flow_blend_on_the_host_lowers_the_warping_error_of_a_flickering_device():
    preview = panned_preview(8)
    outputs = [flickering_device(f, np.random.default_rng(t)) for t, f in enumerate(preview)]
    plain, blended = HostFinish(None), HostFinish(None, flow_blend=0.7)
    per_frame = [plain(f, o, 0) for f, o in zip(preview, outputs, strict=True)]
    steady = [blended(f, o, 0) for f, o in zip(preview, outputs, strict=True)]
    assert warping_error(preview, steady) < 0.5 * warping_error(preview, per_frame)


def test_a_style_switch_or_a_cut_starts_afresh():
    styles, preview = bank(), panned_preview(3)
    outputs = [flickering_device(f, np.random.default_rng(t)) for t, f in enumerate(preview)]
    finish, plain = HostFinish(styles, flow_blend=0.7, palette_momentum=1.0), HostFinish(styles)
    finish(preview[0], outputs[0], 0)
    assert not np.array_equal(finish(preview[1], outputs[1], 0), plain(preview[1], outputs[1], 0))
    assert np.array_equal(finish(preview[2], outputs[2], 1), plain(preview[2], outputs[2], 1))  # switched style
    cut = np.rint(textured(seed=9)[:, :W] * 255).astype(np.uint8)
    other = flickering_device(cut, np.random.default_rng(5))
    assert np.array_equal(finish(cut, other, 1), plain(cut, other, 1))  # another scene


def test_palette_held_per_shot_keeps_the_first_frames_map():
    styles, preview = bank(), panned_preview(2)
    first = flickering_device(preview[0], np.random.default_rng(0))
    darker = first * 0.6  # the device's second output: the same picture, darker
    held = HostFinish(styles, palette_momentum=1.0)
    held(preview[0], first, 0)
    kept = held(preview[1], darker, 0).astype(np.float32)
    rematched = HostFinish(styles)(preview[1], darker, 0).astype(np.float32)
    assert kept.mean() < rematched.mean() - 10  # the first frame's map keeps the darker frame darker


def test_host_options_are_checked():
    with pytest.raises(InputError, match=r"demo\.flow_blend 1\.0 is out of range"):
        HostFinish(None, flow_blend=1.0)
    with pytest.raises(InputError, match=r"palette_momentum 2\.0 is out of range"):
        HostFinish(bank(), palette_momentum=2.0)
    with pytest.raises(InputError, match="style bank has no palettes"):
        HostFinish({"names": ["a"], "palette": None}, palette_momentum=0.5)


def test_stand_in_preview_frames_reach_the_host_finish():
    """The preview arrives as the device sends it (planar BGR); the blob's output is a stand-in array."""
    preview = panned_preview(2)
    finish = HostFinish(None, flow_blend=0.5)
    for frame in preview:
        planar = np.ascontiguousarray(frame[..., ::-1].transpose(2, 0, 1)).ravel()
        original = _planar_bgr_to_rgb(planar, W, H)
        assert np.array_equal(original, frame)
        out = finish(original, (frame.astype(np.float32) / 255.0).transpose(2, 0, 1)[None], 0)
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - frame)[8:-8, 8:-8].mean() < 0.5  # two aligned equal pictures blended
