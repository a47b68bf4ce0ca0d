"""Stable video options: smoothed content statistics and palette map per shot (`adain.video.StableAdaIN`) and
flow-guided blending (`apply`), on synthetic clips with known motion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import AdaINStylizer, Decoder
from stylepipe.adain.video import Smoothing, StableAdaIN
from stylepipe.apply import StylizeError, run_stylizer, stylise_frames
from stylepipe.core.media import iter_video_frames
from stylepipe.core.runtime import Runtime
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StatsOrigin
from stylepipe.nn.temporal import warping_error

from .test_flow_blend import H, W, panned_clip, smooth, write_clip

CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.manual_seed(0)
    model = AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)).eval()
    return torch_engine(model, CPU, Finish("histogram", 1.0))


@pytest.fixture(scope="module")
def style(engine: Engine) -> StyleTarget:
    painting = smooth(64, 64, 7)
    mean, std = engine.style_stats(painting)
    return StyleTarget(mean, std, palette_of(painting[0])[None])


def as_frames(images: list[torch.Tensor]) -> list[np.ndarray]:
    return [img[0].permute(1, 2, 0).numpy() for img in images]


def test_one_frame_stable_equals_the_per_frame_path(engine, style):
    frame = panned_clip(1)[0]
    stable = StableAdaIN(engine, style, 1.0, Smoothing(content_stats=0.9, palette=0.9))
    torch.testing.assert_close(stable(frame), engine.frame(frame, style, 1.0), rtol=0, atol=0)


def test_no_smoothing_equals_the_per_frame_path_on_every_frame(engine, style):
    clip = panned_clip(3)
    plain = StableAdaIN(engine, style, 0.8, Smoothing())
    for frame in clip:
        torch.testing.assert_close(plain(frame), engine.frame(frame, style, 0.8), rtol=0, atol=1e-6)


class Identity:
    """A shift-stable stand-in for the networks (features = the RGB image, decoded as is): AdaIN is then a
    per-channel affine colour map from the frame's own statistics, the flicker the smoothing acts on."""

    name, precision, device = "identity", "f32", torch.device("cpu")

    def encode(self, content: torch.Tensor) -> torch.Tensor:
        return content.float()

    def decode(self, target: torch.Tensor) -> torch.Tensor:
        return target


def blinking_pan(frames: int, step: int = 2) -> list[torch.Tensor]:
    """A scene panned `step` px per frame holding a lamp that is dark and bright on alternate frames: the
    frame statistics jump while most of the picture only moves."""
    scene = smooth(H, W + frames * step, 0)
    clip = []
    for t in range(frames):
        frame = scene[..., t * step : t * step + W].clone()
        frame[..., 8:24, 40:56] = float(t % 2)
        clip.append(frame)
    return clip


def identity_engine(palette: str) -> tuple[Engine, StyleTarget]:
    engine = Engine(Identity(), StatsOrigin(3), 1, Finish(palette, 0.0))
    painting = smooth(64, 64, 7)
    return engine, StyleTarget(*engine.style_stats(painting), palette_of(painting[0])[None])


def clip_error(engine: Engine, style: StyleTarget, smoothing: Smoothing, clip: list[torch.Tensor]) -> float:
    stylizer = StableAdaIN(engine, style, 1.0, smoothing)
    return warping_error(as_frames(clip), as_frames([stylizer(f) for f in clip]))


def test_smoothing_lowers_the_warping_error_where_frame_statistics_jump():
    clip = blinking_pan(8)
    engine, style = identity_engine("none")  # the content statistics alone decide the colours
    plain = clip_error(engine, style, Smoothing(), clip)
    assert clip_error(engine, style, Smoothing(content_stats=0.9), clip) < 0.7 * plain
    engine, style = identity_engine("histogram")  # the palette map re-normalises each frame: smooth both
    plain = clip_error(engine, style, Smoothing(), clip)
    assert clip_error(engine, style, Smoothing(0.9, 0.9), clip) < 0.7 * plain


def test_start_shot_forgets_the_previous_frames(engine, style):
    first, other = panned_clip(1, seed=0)[0], panned_clip(1, seed=3)[0]
    stable = StableAdaIN(engine, style, 1.0, Smoothing(1.0, 1.0))
    stable(first)
    held = stable(other)  # momentum 1: the first frame's statistics and map
    stable.start_shot()
    torch.testing.assert_close(stable(other), engine.frame(other, style, 1.0), rtol=0, atol=0)
    assert not torch.allclose(held, engine.frame(other, style, 1.0))


def video_error(engine: Engine, style: StyleTarget, smoothing: Smoothing, clip: list[torch.Tensor]) -> float:
    """The warping error of the clip through `apply`'s video path, which feeds the stylizer each frame's
    motion."""
    outputs = stylise_frames(StableAdaIN(engine, style, 1.0, smoothing), (f[0] for f in clip))
    return warping_error(as_frames(clip), [out.permute(1, 2, 0).numpy() for out in outputs])


def test_decoded_blend_lowers_the_warping_error_of_a_pan(engine, style):
    # noiseless: the detail step passes each frame's own sensor noise on after the blend, by design
    clip = panned_clip(8, noise=0.0)
    assert video_error(engine, style, Smoothing(decoded=0.9), clip) < 0.5 * video_error(engine, style, Smoothing(),
                                                                                        clip)


def test_feature_blend_lowers_the_warping_error_of_a_pan(engine, style):
    clip = panned_clip(8, noise=0.0)
    assert video_error(engine, style, Smoothing(features=0.9), clip) < 0.7 * video_error(engine, style, Smoothing(),
                                                                                         clip)


def test_a_cut_ends_the_decoded_and_feature_blends(engine, style):
    first, other = panned_clip(1, seed=0)[0], panned_clip(1, seed=3)[0]
    stable = StableAdaIN(engine, style, 1.0, Smoothing(decoded=0.9, features=0.9))
    stable.follow(None)
    stable(first)
    stable.follow(None)  # a cut: nothing of the first frame reaches the next
    torch.testing.assert_close(stable(other), engine.frame(other, style, 1.0), rtol=0, atol=1e-6)


def test_stable_options_on_a_one_frame_video_equal_the_per_frame_path(engine, style, tmp_path):
    source = write_clip(tmp_path / "one.mp4", panned_clip(1))
    plain, stable = tmp_path / "plain.mp4", tmp_path / "stable.mp4"
    run_stylizer(source, plain, StableAdaIN(engine, style, 1.0, Smoothing()), progress=False, flow_blend=0.0)
    run_stylizer(source, stable, StableAdaIN(engine, style, 1.0, Smoothing(0.9, 0.9, 0.9, 0.9)), progress=False,
                 flow_blend=0.5)
    (a,), (b,) = list(iter_video_frames(plain)), list(iter_video_frames(stable))
    assert np.array_equal(a, b)


def test_smoothing_is_refused_where_it_does_not_apply(engine, style):
    without_palette = StyleTarget(style.mean, style.std, None)
    with pytest.raises(StylizeError, match="palette_momentum smooths the match to the painting's palette") as err:
        StableAdaIN(engine, without_palette, 1.0, Smoothing(palette=0.5))
    assert err.value.options == ("palette_momentum",)
    with pytest.raises(StylizeError, match=r"content_stats_momentum 1.5 is out of range"):
        Smoothing(content_stats=1.5)


def cli_setup(tmp_path, tiny_models, frames: int) -> tuple[Path, list[str]]:
    """A panned clip of `frames` frames and the `stylize` flags of a small painting and the tiny models."""
    enc, dec = tiny_models
    clip = write_clip(tmp_path / "clip.mp4", panned_clip(frames))
    style = tmp_path / "style.png"
    Image.fromarray((smooth(32, 32, 7)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(style)
    return clip, ["--style", str(style), "--encoder", str(enc), "--decoder", str(dec), "--no-progress",
                  "--style-size", "32"]


def test_cli_stylize_runs_the_stable_options_on_a_video_and_refuses_them_on_an_image(tmp_path, tiny_models, capsys):
    from stylepipe.cli import main

    clip, common = cli_setup(tmp_path, tiny_models, 3)
    assert main(["stylize", str(clip), "-o", str(tmp_path / "out.mp4"), "--flow-blend", "0.5",
                 "--content-stats-momentum", "0.9", "--palette-momentum", "0.9",
                 "--palette", "histogram", *common]) == 0
    assert len(list(iter_video_frames(tmp_path / "out.mp4"))) == 3
    image = tmp_path / "still.png"
    Image.fromarray((panned_clip(1)[0][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(image)
    assert main(["stylize", str(image), "-o", str(tmp_path / "o.png"), "--content-stats-momentum", "0.9",
                 *common]) == 1
    assert "--content-stats-momentum: " in capsys.readouterr().err
    assert main(["stylize", str(image), "-o", str(tmp_path / "o.png"), "--flow-blend", "0.5", *common]) == 1
    assert "--flow-blend: " in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert main(["stylize", str(clip), "-o", str(tmp_path / "m.mp4"), "--palette-momentum", "0.5",
                 "--preserve-color", "luminance", *common]) == 1
    assert "do not combine with preserve_color" in capsys.readouterr().err


def test_cli_stylize_steadies_a_video_by_default_and_leaves_images_alone(tmp_path, tiny_models, capsys):
    from stylepipe.cli import main

    clip, common = cli_setup(tmp_path, tiny_models, 6)
    common += ["--palette", "histogram"]
    assert main(["stylize", str(clip), "-o", str(tmp_path / "default.mp4"), *common]) == 0
    assert main(["stylize", str(clip), "-o", str(tmp_path / "plain.mp4"), "--flow-blend", "0", "--decoded-blend",
                 "0", "--feature-blend", "0", *common]) == 0
    inputs = list(iter_video_frames(clip))
    steady = warping_error(inputs, list(iter_video_frames(tmp_path / "default.mp4")))
    assert steady < 0.7 * warping_error(inputs, list(iter_video_frames(tmp_path / "plain.mp4")))
    assert main(["stylize", str(clip), "-o", str(tmp_path / "unblended.mp4"), "--feature-blend", "0", *common]) == 0
    default, unblended = (list(iter_video_frames(tmp_path / f)) for f in ("default.mp4", "unblended.mp4"))
    assert not all(np.array_equal(a, b) for a, b in zip(default, unblended, strict=True))  # blended by default
    image = tmp_path / "still.png"
    Image.fromarray((panned_clip(1)[0][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(image)
    assert main(["stylize", str(image), "-o", str(tmp_path / "o.png"), *common]) == 0  # the video defaults
    assert main(["stylize", str(image), "-o", str(tmp_path / "p.png"), "--decoded-blend", "0.5", *common]) == 1
    assert "--decoded-blend: " in capsys.readouterr().err and not (tmp_path / "p.png").exists()
    assert main(["stylize", str(clip), "-o", str(tmp_path / "r.mp4"), "--decoded-blend", "1.0", *common]) == 1
    assert "decoded_blend 1.0 is out of range" in capsys.readouterr().err
    assert main(["stylize", str(image), "-o", str(tmp_path / "p.png"), "--feature-blend", "0.5", *common]) == 1
    assert "--feature-blend: " in capsys.readouterr().err and not (tmp_path / "p.png").exists()
    assert main(["stylize", str(clip), "-o", str(tmp_path / "r.mp4"), "--feature-blend", "-0.1", *common]) == 1
    assert "--feature-blend: feature_blend -0.1 is out of range" in capsys.readouterr().err


def test_the_adain_stylizers_say_where_they_run(engine, style):
    from stylepipe.adain.stylize import AdaINStylize, StylizeOptions
    from stylepipe.apply import runs_off_the_cpu

    plain = AdaINStylize(engine, StylizeOptions(), style_images=[smooth(32, 32, 7)])
    stable = StableAdaIN(engine, style, 1.0, Smoothing(decoded=0.9))
    assert plain.device == stable.device == engine.device
    assert not runs_off_the_cpu(plain) and not runs_off_the_cpu(stable)
