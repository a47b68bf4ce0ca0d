"""Flow-guided blending in `apply`'s video path, for any stylizer: it lowers the warping error of a clip with
known motion, and it is refused where it does not apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylepipe.apply import StylizeError, run_stylizer
from stylepipe.core.media import VideoWriter, iter_video_frames
from stylepipe.nn.temporal import warping_error

H, W = 64, 96
ROOT = Path(__file__).resolve().parents[2]


def smooth(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def panned_clip(frames: int, step: int = 2, noise: float = 2 / 255, seed: int = 0) -> list[torch.Tensor]:
    """A still scene panned `step` px per frame with fresh sensor noise on every frame: [1, 3, H, W] each."""
    scene = smooth(H, W + frames * step, seed)
    rng = torch.Generator().manual_seed(seed + 1)
    return [(scene[..., t * step : t * step + W] + noise * torch.randn(1, 3, H, W, generator=rng)).clamp(0, 1)
            for t in range(frames)]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_clip(path: Path, images: list[torch.Tensor]) -> Path:
    with VideoWriter(path, 8, W, H) as writer:
        for image in images:
            writer.write(to_uint8(image))
    return path


def flickering(seed: int = 0):
    """A stylizer whose output jitters from frame to frame around its input."""
    noise = torch.Generator().manual_seed(seed)
    return lambda x: (x + 0.05 * torch.randn(x.shape, generator=noise)).clamp(0, 1)


def test_flow_blend_lowers_the_warping_error_of_a_video(tmp_path):
    source = write_clip(tmp_path / "pan.mp4", panned_clip(8))
    inputs = list(iter_video_frames(source))
    errors = {}
    for weight in (0.0, 0.5):
        out = tmp_path / f"out_{weight}.mp4"
        run_stylizer(source, out, flickering(), progress=False, flow_blend=weight)
        errors[weight] = warping_error(inputs, list(iter_video_frames(out)))
    assert errors[0.5] < 0.7 * errors[0.0], errors


def test_flow_blend_leaves_a_one_frame_video_as_the_per_frame_path(tmp_path):
    source = write_clip(tmp_path / "one.mp4", panned_clip(1))
    run_stylizer(source, tmp_path / "plain.mp4", flickering(), progress=False)
    run_stylizer(source, tmp_path / "blend.mp4", flickering(), progress=False, flow_blend=0.5)
    (a,), (b,) = list(iter_video_frames(tmp_path / "plain.mp4")), list(iter_video_frames(tmp_path / "blend.mp4"))
    assert np.array_equal(a, b)


def test_flow_blend_is_refused_for_images_and_out_of_range(tmp_path):
    image = tmp_path / "still.png"
    Image.fromarray(to_uint8(panned_clip(1)[0])).save(image)
    with pytest.raises(StylizeError, match=r"still\.png: flow_blend ties a video's frames together") as err:
        run_stylizer(image, tmp_path / "out.png", flickering(), flow_blend=0.5)
    assert err.value.options == ("flow_blend",) and not (tmp_path / "out.png").exists()
    with pytest.raises(StylizeError, match=r"flow_blend 1\.0 is out of range"):
        run_stylizer(tmp_path / "clip.mp4", tmp_path / "out.mp4", flickering(), flow_blend=1.0)


def test_a_cut_starts_a_shot_of_a_stylizer_that_keeps_state(tmp_path):
    clip = panned_clip(3, seed=0) + panned_clip(3, seed=5)  # a cut after the third frame
    source = write_clip(tmp_path / "cut.mp4", clip)
    starts = []

    class Counting:
        frame = 0

        def follow(self, motion) -> None:
            if motion is None:
                starts.append(self.frame)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            self.frame += 1
            return x

    run_stylizer(source, tmp_path / "out.mp4", Counting(), progress=False)
    assert starts == [0, 3]


def test_host_demo_flow_blend_runner_steadies_a_flickering_feed():
    from stylepipe.demo.host import SteadyRunner, steadied

    clip = [to_uint8(f) for f in panned_clip(8)]
    rng = np.random.default_rng(0)

    def flicker_runner(frame: np.ndarray) -> np.ndarray:
        return np.clip(frame / 255.0 + rng.normal(0, 0.05, frame.shape), 0, 1).astype(np.float32)

    plain = [flicker_runner(f) for f in clip]
    blended_runner = steadied(flicker_runner, 0.5)
    assert isinstance(blended_runner, SteadyRunner) and steadied(flicker_runner, 0.0) is flicker_runner
    blended = [blended_runner(f) for f in clip]
    assert all(b.dtype == np.uint8 and b.shape == f.shape for b, f in zip(blended, clip, strict=True))
    assert warping_error(clip, blended) < 0.7 * warping_error(clip, plain)


def test_cli_steadies_a_johnson_video_by_default(tmp_path, monkeypatch):
    from stylepipe.cli import main
    from stylepipe.johnson.model import TransformerNet, save_johnson

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_johnson(TransformerNet(2), tmp_path / "models/johnson/Cubism/transformer_net.pt", "Cubism", "vgg16_hed")
    clip = write_clip(tmp_path / "pan.mp4", panned_clip(6))
    run = ["--params", str(ROOT / "params.yaml"), "stylize", str(clip), "--model", "johnson:Cubism", "--no-progress"]
    assert main([*run, "-o", "default.mp4"]) == 0
    assert main([*run, "-o", "plain.mp4", "--flow-blend", "0"]) == 0
    inputs = list(iter_video_frames(clip))
    steady = warping_error(inputs, list(iter_video_frames(tmp_path / "default.mp4")))
    plain = warping_error(inputs, list(iter_video_frames(tmp_path / "plain.mp4")))
    assert steady < 0.7 * plain, (steady, plain)


class OnDevice:
    """A stylizer that says where it runs."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(("device", "ahead"), [("cpu", False), ("cuda", True)])
def test_the_flow_overlaps_only_a_network_that_leaves_the_cpu_free(monkeypatch, device, ahead):
    import stylepipe.apply as apply

    overlapped, real = [], apply.tracked
    monkeypatch.setattr(apply, "tracked", lambda frames, track: overlapped.append(1) or real(frames, track))
    frames = [f[0] for f in panned_clip(3)]
    outputs = list(apply.stylise_frames(OnDevice(device), frames, flow_blend=0.5))
    assert bool(overlapped) is ahead
    in_line = apply.stylise_frames(OnDevice(device), frames, flow_blend=0.5, flow_ahead=False)
    assert all(torch.equal(a, b) for a, b in zip(outputs, in_line, strict=True))  # the same frames either way
