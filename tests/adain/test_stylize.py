"""`stylepipe stylize`: options as the reference tools, tiles that match whole frames, bad input, video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylepipe.adain.engine import Engine, Finish
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import AdaINStylizer, Decoder, style_stats_of_images
from stylepipe.adain.stylize import AdaINStylize, StylizeOptions, coral, keep_content_colour, stylize
from stylepipe.apply import StylizeError, apply_padded, run_stylizer
from stylepipe.cli import main
from stylepipe.core.media import open_image, probe_video
from stylepipe.core.runtime import Runtime
from stylepipe.core.tiling import InsufficientMemoryError, choose_tile, feather, plan_windows
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.metrics import ssim_luminance
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StatsOrigin, StyleBank, StyleBankError

from ..conftest import ADAIN_DEPTHS, depth_id, save_tiny_models

CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)
DEEP = [d for d in ADAIN_DEPTHS if d[0] == "relu4_1"]  # for the I/O tests, where the depth does not matter


def engine(model: AdaINStylizer, palette: str = "none", detail: float = 1.0) -> Engine:
    """The model on the torch CPU backend with these finishing settings."""
    return torch_engine(model, CPU, Finish(palette, detail))


def build_model(layer: str, width: float) -> AdaINStylizer:
    torch.manual_seed(0)
    return AdaINStylizer(build_encoder("vgg16_hed", layer), Decoder("vgg16_hed", layer, width)).eval()


@pytest.fixture(scope="module", params=ADAIN_DEPTHS, ids=depth_id)
def model(request: pytest.FixtureRequest) -> AdaINStylizer:
    return build_model(*request.param)


def smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h, w), mode="bilinear").clamp(0, 1)


@pytest.fixture(scope="module")
def two_styles(model) -> StyleBank:
    pairs = [model.style_stats(smooth(32, 32, seed)) for seed in (1, 2)]
    return StyleBank(["a", "b"], torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), "vgg16_hed",
                      model.layer)


def _one(stats: StyleBank, i: int) -> StyleBank:
    return StyleBank([stats.names[i]], stats.mean[i : i + 1], stats.std[i : i + 1], stats.encoder, stats.layer)


def test_windows_partition_and_feathers_sum_to_one():
    h, w, overlap = 104, 136, 16
    total = torch.zeros(1, 1, h, w)
    for win in plan_windows(h, w, 48, overlap, 32):
        y0, y1, x0, x1 = win.core
        assert all(v % 8 == 0 for v in (*win.core, *win.fetch))
        total[..., y0:y1, x0:x1] += feather(win, h, w, overlap)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)
    cover = torch.zeros(h, w)
    for win in plan_windows(h, w, 48, 0, 32):
        cover[win.core[0]:win.core[1], win.core[2]:win.core[3]] += 1
    assert (cover == 1).all()


def test_tiles_use_whole_frame_statistics_and_match_the_untiled_frame(model, two_styles):
    content = smooth(64, 96)
    stats = _one(two_styles, 0)
    full = AdaINStylize(engine(model), StylizeOptions(tile=0), stats=stats)(content)
    tiled = AdaINStylize(engine(model), StylizeOptions(tile=48, tile_overlap=16, tile_context=32), stats=stats)(content)
    assert (full - tiled).abs().max() < 1e-3


def test_stylize_finishes_the_frame_as_the_model_and_its_export_do():
    """Where the decoder overshoots [0, 1], the fast path restores the detail on the unclamped output and
    clamps once, as the exported graphs (`Finish.restore` on the network's output): one picture from every
    entry point."""
    model = build_model("relu3_1", 0.5)
    with torch.no_grad():
        model.decoder.net[-1].bias.copy_(torch.tensor([1.3, 0.5, -0.3]))  # beyond [0, 1] in red and blue
    content, style = smooth(48, 48, 3), smooth(32, 32, 4)
    stats = StyleBank(["s"], *model.style_stats(style), "vgg16_hed", "relu3_1")
    with torch.no_grad():
        expected = Finish("none", 1.0).restore(model(content, *model.style_stats(style)), content)
    for tile in (0, 32):
        opts = StylizeOptions(tile=tile, tile_overlap=8, tile_context=16, palette="none")
        out = AdaINStylize(engine(model), opts, stats=stats)(content)
        assert torch.allclose(out, expected, atol=1e-4), tile


def test_memory_budget_picks_tiles_or_fails_clearly(model, two_styles):
    assert choose_tile(64, 64, 4, budget=1 << 40, context=64) == 0
    tile = choose_tile(4320, 7680, 4, budget=12 << 30, context=64)
    assert 0 < tile < 7680
    with pytest.raises(InsufficientMemoryError, match=r"7680x4320 frame needs about .* GiB .* smaller content size"):
        choose_tile(4320, 7680, 4, budget=1 << 30, context=64)
    small = AdaINStylize(engine(model), StylizeOptions(memory_budget=1 << 20), stats=_one(two_styles, 0))
    with pytest.raises(InsufficientMemoryError):
        small(smooth(64, 64))


def test_any_size_is_padded_and_cropped_back(model, two_styles):
    stylizer = AdaINStylize(engine(model), StylizeOptions(), stats=_one(two_styles, 0))
    out = apply_padded(stylizer, smooth(37, 45)[0])
    assert out.shape == (3, 37, 45)


def test_interpolation_weights_and_alpha(model, two_styles):
    content = smooth(48, 48)
    a = AdaINStylize(engine(model), StylizeOptions(), stats=_one(two_styles, 0))(content)
    only_a = AdaINStylize(engine(model), StylizeOptions(weights=[2, 0]), stats=two_styles)(content)
    assert torch.allclose(a, only_a, atol=1e-6)
    mean, _ = two_styles.mixed(torch.tensor([0.25, 0.75]))
    assert torch.allclose(mean, 0.25 * two_styles.mean[:1] + 0.75 * two_styles.mean[1:])
    identity = AdaINStylize(engine(model), StylizeOptions(alpha=0.0), stats=_one(two_styles, 0))(content)
    recon = Finish("none", 1.0).restore(model.decoder(model.encoder.encode(content)), content)  # fine detail
    assert torch.allclose(identity, recon, atol=1e-5)
    with pytest.raises(StylizeError, match="pass weights"):
        AdaINStylize(engine(model), StylizeOptions(), stats=two_styles)
    with pytest.raises(StylizeError, match=r"^alpha 1\.5 is out of range"):
        AdaINStylize(engine(model), StylizeOptions(alpha=1.5), stats=two_styles)


def test_mask_selects_the_style_per_region(model, two_styles, tmp_path):
    content = smooth(48, 64)
    per_style = [AdaINStylize(engine(model), StylizeOptions(), stats=_one(two_styles, i))(content) for i in (0, 1)]
    for value, expected in ((255, per_style[0]), (0, per_style[1])):
        Image.new("L", (32, 24), value).save(tmp_path / "m.png")  # same aspect, other size: resized
        out = AdaINStylize(engine(model), StylizeOptions(mask=tmp_path / "m.png"), stats=two_styles)(content)
        assert torch.allclose(out, expected, atol=1e-4)
    half = np.zeros((48, 64), np.uint8)
    half[:, :32] = 255
    Image.fromarray(half).save(tmp_path / "half.png")
    out = AdaINStylize(engine(model), StylizeOptions(mask=tmp_path / "half.png"), stats=two_styles)(content)
    assert out.shape == content.shape
    Image.new("L", (64, 16)).save(tmp_path / "wide.png")
    with pytest.raises(StylizeError, match=r"wide\.png: mask is 64x16 but the content is 64x48"):
        AdaINStylize(engine(model), StylizeOptions(mask=tmp_path / "wide.png"), stats=two_styles)(content)


def test_colour_preservation(model, two_styles):
    content, styled = 0.3 + 0.4 * smooth(32, 32, 3), 0.3 + 0.4 * smooth(32, 32, 4)  # in gamut: no clamping
    kept = keep_content_colour(styled, content)
    m = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    chroma = lambda x: torch.einsum("ij,njhw->nihw", m, x)  # noqa: E731
    assert torch.allclose(chroma(kept), chroma(content), atol=2e-2)
    recoloured = coral(styled[0], content[0])
    assert torch.allclose(recoloured.mean(dim=(1, 2)), content[0].mean(dim=(1, 2)), atol=2e-2)
    with pytest.raises(StylizeError, match="coral"):
        AdaINStylize(engine(model), StylizeOptions(preserve_color="coral"), stats=_one(two_styles, 0))


def _img(path: Path, size=(40, 32), mode="RGB", **save) -> Path:
    arr = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, **save)
    return path


def test_awkward_image_modes_are_converted(tmp_path):
    _img(tmp_path / "cmyk.jpg", mode="CMYK")
    _img(tmp_path / "rgba.png", mode="RGBA")
    _img(tmp_path / "grey.png", mode="L")
    Image.fromarray((np.arange(32 * 40).reshape(32, 40) * 50).astype(np.uint16)).save(tmp_path / "deep.png")
    for name in ("cmyk.jpg", "rgba.png", "grey.png", "deep.png"):
        img = open_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == (40, 32), name
    deep = np.asarray(open_image(tmp_path / "deep.png"))
    assert 0 < deep.mean() < 255 and deep.max() > 200  # scaled from 16 bits, not clipped to white


def test_cli_folder_skips_bad_files_and_stats_file_round_trip(tmp_path, tiny_models, capsys):
    enc, dec = tiny_models
    style = _img(tmp_path / "style.png", (32, 32))
    folder = tmp_path / "in"
    folder.mkdir()
    _img(folder / "a.png", (36, 28))
    good = _img(tmp_path / "full.jpg", (40, 32))
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    common = ["--encoder", str(enc), "--decoder", str(dec), "--no-progress", "--style-size", "32"]
    stats = tmp_path / "style.stats.pt"
    assert main(["stylize", str(folder), "--style", str(style), "-o", str(tmp_path / "out"),
                 "--save-style-stats", str(stats), *common]) == 0
    result = capsys.readouterr().out
    assert "truncated.jpg" in result and "notes.png" in result
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_stylized.png"]
    assert main(["stylize", str(folder / "a.png"), "--style-stats", str(stats), "-o", str(tmp_path / "b.png"),
                 *common]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")),
                          np.asarray(Image.open(tmp_path / "out" / "a_stylized.png")))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert main(["stylize", str(folder / "a.png"), "--style-stats", str(tmp_path / "bad.pt"), "-o",
                 str(tmp_path / "c.png"), *common]) == 1
    assert "bad.pt: not a readable style statistics file" in capsys.readouterr().err
    assert main(["stylize", str(folder / "a.png"), "--style", str(style), "-o", str(tmp_path / "d.png"),
                 "--encoder", str(tmp_path / "missing.pt"), "--decoder", str(dec)]) == 1
    assert "missing.pt: encoder weights not found" in capsys.readouterr().err


def _video(path: Path, frames: int, audio: bool, video: bool = True) -> Path:
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=8) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = 36, 24, "yuv420p"
        aus = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames if video else 0):
            arr = np.full((24, 36, 3), 30 * i % 255, np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode() if vs is not None else []:
            out.mux(packet)
        if aus is not None:
            tone = np.sin(np.arange(16000 * frames // 8) / 10.0).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in [*aus.encode(frame), *aus.encode()]:
                out.mux(packet)
    return path


@pytest.mark.parametrize("model", DEEP, indirect=True, ids=depth_id)
def test_video_frames_are_stylised_and_audio_kept(tmp_path, model, two_styles):
    src = _video(tmp_path / "clip.mp4", 6, audio=True)
    stylizer = AdaINStylize(engine(model), StylizeOptions(), stats=_one(two_styles, 0))
    result = run_stylizer(src, tmp_path / "out.mp4", stylizer, progress=False)
    info = probe_video(tmp_path / "out.mp4")
    assert result["video"]["frames"] == 6 and info.has_audio
    assert (info.width, info.height, info.fps) == (36, 24, Fraction(8))


@pytest.mark.parametrize("model", DEEP, indirect=True, ids=depth_id)
def test_empty_or_broken_video_is_a_clear_error(tmp_path, model, two_styles):
    stylizer = AdaINStylize(engine(model), StylizeOptions(), stats=_one(two_styles, 0))
    empty = _video(tmp_path / "empty.mp4", 4, audio=True, video=False)
    with pytest.raises(StylizeError, match=r"empty\.mp4: no video stream"):
        run_stylizer(empty, tmp_path / "o.mp4", stylizer, progress=False)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(StylizeError, match=r"junk\.mp4: not a readable video"):
        run_stylizer(tmp_path / "junk.mp4", tmp_path / "o.mp4", stylizer, progress=False)
    assert not (tmp_path / "o.mp4").exists()


def test_saved_statistics_record_the_layer_and_must_fit_the_model(tmp_path, model, two_styles):
    saved = StyleBank.load(two_styles.save(tmp_path / "s.pt"))
    assert (saved.encoder, saved.layer, saved.mean.shape[1]) == ("vgg16_hed", model.layer, model.channels)
    saved.check_fits(StatsOrigin.of(model), "s.pt")
    other_layer = next(layer for layer, _ in ADAIN_DEPTHS if layer != model.layer)
    other = build_model(other_layer, 1.0)
    with pytest.raises(StyleBankError, match=rf"s\.pt: style statistics of encoder 'vgg16_hed' at {model.layer}, "
                                           rf"{model.channels} channels, but the model takes encoder 'vgg16_hed' at "
                                           rf"{other_layer}, {other.channels} channels"):
        saved.check_fits(StatsOrigin.of(other), "s.pt")
    with pytest.raises(StyleBankError, match=rf"styles \['a'\]: .* at {model.layer}, .* at {other_layer}"):
        AdaINStylize(engine(other), StylizeOptions(), stats=_one(two_styles, 0))
    vgg19 = StyleBank(saved.names, saved.mean, saved.std, "vgg19", model.layer)
    with pytest.raises(StyleBankError, match=r"x\.pt: style statistics of encoder 'vgg19' .* model takes encoder "
                                           r"'vgg16_hed'"):
        vgg19.check_fits(StatsOrigin.of(model), "x.pt")
    unrecorded = StyleBank(saved.names, saved.mean, saved.std)  # a file of the older format: channels only
    unrecorded.check_fits(StatsOrigin.of(model), "old.pt")
    with pytest.raises(StyleBankError, match=rf"old\.pt: style statistics of {model.channels} channels, but"):
        unrecorded.check_fits(StatsOrigin.of(other), "old.pt")


def test_a_statistics_file_of_another_layer_is_refused_naming_both(tmp_path):
    enc, dec = save_tiny_models(tmp_path, "relu3_1", 0.5)
    deep = build_model("relu4_1", 1.0)
    stats = StyleBank(["ink"], *deep.style_stats(smooth(32, 32)), "vgg16_hed", "relu4_1")
    stats_file = stats.save(tmp_path / "ink.pt")
    _img(tmp_path / "c.png")
    with pytest.raises(StyleBankError, match=r"ink\.pt: style statistics of encoder 'vgg16_hed' at relu4_1, 512 "
                                           r"channels, but the model takes encoder 'vgg16_hed' at relu3_1, 256"):
        stylize(tmp_path / "c.png", tmp_path / "out.png", style_stats=stats_file, encoder=enc, decoder=dec,
                progress=False)
    assert not (tmp_path / "out.png").exists()
    result = stylize(tmp_path / "c.png", tmp_path / "out.png", style=[_img(tmp_path / "s.png", (32, 32))],
                     save_style_stats=tmp_path / "s.pt", encoder=enc, decoder=dec, progress=False)
    assert result["written"] == [str(tmp_path / "out.png")]
    assert StyleBank.load(tmp_path / "s.pt").layer == "relu3_1"


def _invert(x: torch.Tensor) -> torch.Tensor:
    """A model-free stylizer: the tests below are about which file goes where."""
    return 1 - x


def _flat(path: Path, value: int, size=(24, 16)) -> Path:
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def test_inputs_with_the_same_stem_get_distinct_outputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _flat(folder / "a.jpg", 40)
    _flat(folder / "a.png", 200)
    _flat(folder / "b.png", 90)
    result = run_stylizer(folder, tmp_path / "out", _invert, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_jpg_stylized.png", "a_png_stylized.png", "b_stylized.png"]
    assert len(result["written"]) == 3
    for name, value in (("a_jpg", 40), ("a_png", 200)):  # each output holds its own input, stylised
        assert abs(np.asarray(Image.open(tmp_path / "out" / f"{name}_stylized.png")).mean() - (255 - value)) < 3


def test_an_output_that_would_overwrite_its_input_is_refused(tmp_path):
    photo = _flat(tmp_path / "a.png", 40)
    original = photo.read_bytes()
    with pytest.raises(StylizeError, match=r"a\.png: the output would overwrite the input .*a\.png; choose another -o"):
        run_stylizer(photo, photo, _invert, progress=False)
    with pytest.raises(StylizeError, match="would overwrite the input"):
        run_stylizer(photo, tmp_path / "." / "a.png", _invert, progress=False)
    assert photo.read_bytes() == original
    folder = tmp_path / "in"  # the folder as its own output, holding an earlier run's output
    folder.mkdir()
    _flat(folder / "b.png", 40)
    earlier = _flat(folder / "b_stylized.png", 1)
    with pytest.raises(StylizeError, match=r"b_stylized\.png: the output would overwrite the input"):
        run_stylizer(folder, folder, _invert, progress=False)
    assert np.asarray(Image.open(earlier)).max() == 1
    clip = _video(tmp_path / "clip.mp4", 2, audio=False)
    before = clip.read_bytes()
    with pytest.raises(StylizeError, match="would overwrite the input"):
        run_stylizer(clip, clip, _invert, progress=False)
    assert clip.read_bytes() == before


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\n"
       b"newpath 0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n")


def test_only_the_accepted_image_formats_are_decoded(tmp_path, monkeypatch):
    """An EPS named .jpg is refused by name, and Pillow's EPS decoder (Ghostscript) never runs."""
    from PIL import EpsImagePlugin

    from stylepipe.core.media import MediaError
    from stylepipe.data.preprocess import ImageRejected, convert_image

    def refuse(*args, **kwargs):
        raise AssertionError("the EPS decoder ran (Ghostscript would have been started)")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", refuse)
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(EPS)
    with pytest.raises(MediaError, match=r"photo\.jpg: not a readable image of an accepted format \(JPEG, PNG"):
        open_image(fake)
    with pytest.raises(ImageRejected, match=r"not a recognised image \(accepted formats: JPEG, PNG"):
        convert_image(str(fake), 512, 8)
    assert open_image(_img(tmp_path / "real.webp", format="WEBP")).size == (40, 32)  # the accepted ones still open


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _marked_clip(path: Path, rotation: int = 0, audio_codec: str | None = None) -> Path:
    """A 48x32 clip with a white square in its top-left corner, optionally with display-matrix rotation
    side data (how phones store portrait video) and a sound track in `audio_codec`."""
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=8)
        vs.width, vs.height, vs.pix_fmt = 48, 32, "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        aus = out.add_stream(audio_codec, rate=16000) if audio_codec else None
        frame = np.zeros((32, 48, 3), np.uint8)
        frame[:8, :8] = 255
        for _ in range(4):
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            tone = (np.sin(np.arange(8000) / 10.0) * 8000).astype(np.int16)[None]
            sound = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            sound.sample_rate = 16000
            for packet in [*aus.encode(sound), *aus.encode()]:
                out.mux(packet)
    return path


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_portrait_phone_video_comes_out_upright(tmp_path):
    src = _marked_clip(tmp_path / "portrait.mp4", rotation=-90)  # shown turned 90 degrees clockwise
    run_stylizer(src, tmp_path / "out.mp4", _identity, progress=False)
    frame = _first_frame(tmp_path / "out.mp4")
    assert frame.shape[:2] == (48, 32)  # portrait, as the phone showed it
    assert frame[:8, -8:].mean() > 200 and frame[:8, :8].mean() < 50  # top-left turned to top-right


@pytest.mark.parametrize(("codec", "expected"), [("pcm_s16le", "aac"), ("aac", "aac")])
def test_audio_mp4_cannot_hold_is_re_encoded(tmp_path, codec, expected):
    src = _marked_clip(tmp_path / "clip.mkv", audio_codec=codec)
    result = run_stylizer(src, tmp_path / "out.mp4", _identity, progress=False)["video"]
    assert result["audio"] == ("copied" if codec == expected else f"re-encoded ({codec} -> aac)")
    with av.open(str(tmp_path / "out.mp4")) as out:
        assert [s.codec_context.name for s in out.streams.audio] == [expected]
        assert sum(f.samples for f in out.decode(audio=0)) >= 7000  # the half second of sound is there


def test_audio_that_cannot_be_decoded_is_dropped_with_a_warning(tmp_path, monkeypatch):
    from stylepipe.core import media

    src = _marked_clip(tmp_path / "clip.mkv", audio_codec="pcm_s16le")
    monkeypatch.setattr(media, "decodable", lambda codec: False)  # as a build without that decoder
    with pytest.warns(media.AudioDroppedWarning, match=r"clip\.mkv: audio codec 'pcm_s16le' cannot be decoded"):
        result = run_stylizer(src, tmp_path / "out.mp4", _identity, progress=False)["video"]
    assert result["frames"] == 4 and result["audio"].startswith("dropped")
    assert not probe_video(tmp_path / "out.mp4").has_audio


def test_the_host_demo_reads_portrait_video_upright(tmp_path):
    from stylepipe.demo.host import read_frames

    src = _marked_clip(tmp_path / "portrait.mp4", rotation=-90)
    frame = next(read_frames(src, (32, 48)))
    assert frame[:8, -8:].mean() > 200 and frame[:8, :8].mean() < 50


@pytest.fixture(scope="module")
def palette_model() -> AdaINStylizer:
    """A model whose outputs are matched to the painting's palette (finish.palette histogram)."""
    torch.manual_seed(0)
    decoder = Decoder("vgg16_hed", "relu3_1", 0.5)
    return AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), decoder).eval()


@pytest.fixture(scope="module")
def palette_engine(palette_model) -> Engine:
    return engine(palette_model, "histogram")


def _palette_styles(model: AdaINStylizer) -> StyleBank:
    return style_stats_of_images(model, ["red", "blue"], [_tinted(5, [1.0, 0.2, 0.1]), _tinted(6, [0.1, 0.3, 1.0])])


def _tinted(seed: int, rgb: list[float]) -> torch.Tensor:
    return smooth(32, 32, seed)[0] * torch.tensor(rgb)[:, None, None]


def test_a_palette_decoder_stylises_in_the_paintings_palette(palette_model, palette_engine):
    """The default follows the engine's finishing settings: its output takes each painting's colour
    distribution, as `Engine.stylize` with a style image does; --palette none gives the network's own."""
    content, styles = smooth(48, 64, 7), _palette_styles(palette_model)
    for i in range(2):
        out = AdaINStylize(palette_engine, StylizeOptions(), stats=_one_with_palette(styles, i))(content)
        own = palette_of(out[0])
        assert (own - styles.palette[i]).abs().mean() < 0.02
        raw = AdaINStylize(palette_engine, StylizeOptions(palette="none"), stats=_one_with_palette(styles, i))
        assert (palette_of(raw(content)[0]) - styles.palette[i]).abs().mean() > 0.05
    api = palette_engine.stylize(content, _tinted(6, [0.1, 0.3, 1.0])[None])
    assert (palette_of(api[0]) - styles.palette[1]).abs().mean() < 0.02


def test_palette_follows_the_mask_and_refuses_statistics_without_it(palette_model, palette_engine, tmp_path):
    content, styles = smooth(48, 64, 8), _palette_styles(palette_model)
    half = np.zeros((48, 64), np.uint8)
    half[:, :32] = 255  # left: red, right: blue
    Image.fromarray(half).save(tmp_path / "half.png")
    out = AdaINStylize(palette_engine, StylizeOptions(mask=tmp_path / "half.png"), stats=styles)(content)
    assert out[0, 2, :, :32].mean() + 0.2 < out[0, 2, :, 32:].mean()  # blue channel: low left, high right
    bare = StyleBank(styles.names, styles.mean, styles.std, styles.encoder, styles.layer)
    with pytest.raises(StyleBankError, match=r"hold no palette"):
        AdaINStylize(palette_engine, StylizeOptions(weights=[1, 1]), stats=bare)
    AdaINStylize(palette_engine, StylizeOptions(palette="none", weights=[1, 1]), stats=bare)(content)


def test_palette_option_is_validated():
    with pytest.raises(StylizeError, match=r"palette 'lab': expected one of \['histogram', 'none'\]"):
        StylizeOptions(palette="lab").validate()


def test_detail_option_overrides_the_finish_setting_and_is_validated(tmp_path):
    """The finishing settings given to `stylize` (params finish.detail, 1 by default) restore the photo's
    fine detail; --detail 0 gives the network's own output, which lacks the photo's pixel-scale edges; an
    out-of-range weight is refused before any work."""
    enc, dec = save_tiny_models(tmp_path, "relu3_1", 0.5)
    content, style = _img(tmp_path / "c.png", (32, 32)), _img(tmp_path / "s.png", (32, 32))
    written = {}
    for detail in (None, 0.0):
        out = tmp_path / f"out_{detail}.png"
        stylize(content, out, style=[style], options=StylizeOptions(detail=detail, palette="none"), encoder=enc,
                decoder=dec, progress=False)
        written[detail] = torch.from_numpy(np.asarray(Image.open(out), np.float32) / 255).permute(2, 0, 1)
    photo = torch.from_numpy(np.asarray(Image.open(content), np.float32) / 255).permute(2, 0, 1)
    assert ssim_luminance(written[None], photo) > ssim_luminance(written[0.0], photo) + 0.1
    with pytest.raises(StylizeError, match=r"detail 1\.5 is out of range: expected 0\.\.1"):
        stylize(content, tmp_path / "bad.png", style=[style], options=StylizeOptions(detail=1.5), encoder=enc,
                decoder=dec, progress=False)
    assert not (tmp_path / "bad.png").exists()


def _one_with_palette(stats: StyleBank, i: int) -> StyleBank:
    return stats.select([stats.names[i]], "test")
