"""Demo: the OAK pipeline package (no device needed), the no-device error, host-side video rendering."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import depthai as dai
import numpy as np
import pytest
import torch
import yaml

from stylepipe.adain.engine import Finish, StyleTarget
from stylepipe.adain.video import Smoothing, StableAdaIN
from stylepipe.apply import stylise_frames
from stylepipe.core.config import Params, deep_merge, parse_params
from stylepipe.core.errors import InputError
from stylepipe.demo.clip import ken_burns, load_source_image
from stylepipe.demo.host import (
    StableStyleRunner,
    SteadyRunner,
    demo_engine,
    inner_runner,
    make_style_runner,
    render_video,
    run_demo,
    run_host,
    steadied,
    stream,
    to_tensor,
)
from stylepipe.demo.oak import build_pipeline, run_live, save_pipeline, style_message
from stylepipe.demo.ui import DisplayError, StyleCycler
from stylepipe.nn.encoders import TAP_CHANNELS
from stylepipe.nn.statistics import StyleBank, StyleBankError
from stylepipe.nn.temporal import warping_error

from ..conftest import ADAIN_DEPTHS, depth_id, save_tiny_models

ROOT = Path(__file__).resolve().parents[2]
SIZE = (48, 32)  # (width, height)
SHALLOW, DEEP = ADAIN_DEPTHS


def make_params(**demo: Any) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = {"export": {"height": SIZE[1], "width": SIZE[0], "speed_repeats": 1}, "demo": demo}
    return parse_params(deep_merge(raw, over))


def node_names(data: dict) -> list[str]:
    return sorted(n["name"] for _, n in data["pipeline"]["nodes"])


@pytest.mark.parametrize("channels", [TAP_CHANNELS[layer] for layer, _ in ADAIN_DEPTHS])
def test_pipeline_json_without_device(tmp_path: Path, channels: int) -> None:
    baked = save_pipeline(build_pipeline(None, SIZE, False), tmp_path / "baked.json")
    assert json.loads((tmp_path / "baked.json").read_text()) == json.loads(json.dumps(baked))
    assert node_names(baked) == ["ColorCamera", "NeuralNetwork", "XLinkOut", "XLinkOut"]
    cam = next(n for _, n in baked["pipeline"]["nodes"] if n["name"] == "ColorCamera")["properties"]
    assert (cam["previewWidth"], cam["previewHeight"]) == SIZE and cam["interleaved"] is False
    assert baked["stylepipe"]["blob"] is None and "offline" in baked["stylepipe"]["blob_note"]
    styles = save_pipeline(build_pipeline(None, SIZE, True, channels), tmp_path / "styles.json", None, channels)
    assert node_names(styles) == ["ColorCamera", "NeuralNetwork", "XLinkIn", "XLinkOut", "XLinkOut"]
    targets = {c["node2Input"] for c in styles["pipeline"]["connections"]}
    assert {"content", "style_mean", "style_std"} <= targets
    assert styles["stylepipe"]["streams"] == {"out": ["nn", "preview"], "in": ["style"]}
    assert styles["stylepipe"]["style_channels"] == channels and baked["stylepipe"]["style_channels"] is None
    link = next(n for _, n in styles["pipeline"]["nodes"] if n["name"] == "XLinkIn")["properties"]
    assert link["maxDataSize"] >= 2 * channels * 4  # mean and std, even as float32
    with pytest.raises(ValueError, match="needs the channel count"):
        build_pipeline(None, SIZE, True)


@pytest.mark.parametrize("channels", [TAP_CHANNELS[layer] for layer, _ in ADAIN_DEPTHS])
def test_style_message_takes_the_networks_channel_count(channels: int) -> None:
    mean, std = np.zeros((1, channels, 1, 1)), np.ones((1, channels, 1, 1))
    assert isinstance(style_message(mean, std, channels), dai.NNData)
    with pytest.raises(ValueError, match=rf"statistics of {channels}/{channels} values, .* inputs take {2 * channels}"):
        style_message(mean, std, 2 * channels)


def test_run_live_without_device_is_clear() -> None:
    with pytest.raises(SystemExit, match="no OAK device connected"):
        run_live(None, SIZE, show=False)


def count_frames(path: Path) -> tuple[int, int, int, str]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return n, stream.codec_context.width, stream.codec_context.height, stream.codec_context.name


def test_render_video_is_decodable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stylepipe.demo.host as host

    frames = list(ken_burns(load_source_image(), 7, SIZE))
    assert all(
        np.array_equal(a, b) for a, b in zip(frames, ken_burns(load_source_image(), 7, SIZE), strict=True)
    )
    clock = [100.0]
    monkeypatch.setattr(host, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def runner(frame: np.ndarray) -> np.ndarray:
        clock[0] += 0.05  # each frame's inference takes 50 ms; nothing else the demo does moves this clock
        return 255 - frame

    out = tmp_path / "v.mp4"
    info = render_video(iter(frames), runner, out, fps=12)
    assert info["frames"] == 7  # the speed is the runner's alone: 20 FPS over 0.35 s
    assert info["inference_fps"] == pytest.approx(20.0) and info["inference_s"] == pytest.approx(0.35)
    monkeypatch.undo()
    assert count_frames(out) == (7, 2 * SIZE[0], SIZE[1], "h264")
    again = run_host(out, lambda f: f, tmp_path / "host.mp4", SIZE, fps=12, max_frames=5)
    assert again["frames"] == 5 and count_frames(tmp_path / "host.mp4")[0] == 5


def test_gui_without_display_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DisplayError, match="no display") as err:
        run_host(tmp_path / "missing.mp4", lambda f: f, None, SIZE, show=True)
    assert "--" not in str(err.value)  # the library names no CLI flag: the CLI adds --record


def test_the_cli_names_the_record_option_when_no_display_is_available(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from stylepipe import cli

    def no_display(params, args):
        raise DisplayError("a live window was requested but no display is available: record to a file instead")

    monkeypatch.setattr(cli, "_demo_run", no_display)
    assert cli.main(["demo", "--host", "0"]) == 1
    assert "record to a file instead (--record out.mp4)" in capsys.readouterr().err


def save_bank(path: Path, layer: str, recorded: bool = True) -> Path:
    """Two random styles' statistics at `layer`, with the keys train_adain records (or without them)."""
    channels = TAP_CHANNELS[layer]
    bank = {"names": ["a", "b"], "mean": torch.rand(2, channels, 1, 1), "std": torch.rand(2, channels, 1, 1) + 0.5}
    torch.save({**bank, **({"encoder": "vgg16_hed", "layer": layer} if recorded else {})}, path)
    return path


def export_models(directory: Path, layer: str, width: float) -> dict[str, Path]:
    """Untrained models at one AdaIN depth, exported to ONNX (the stage reads the styles graph's inputs for
    the OAK pipeline), with a style bank of that layer."""
    from stylepipe.adain.export import run_export_onnx

    enc, dec = save_tiny_models(directory, layer, width)
    paths = {"encoder_path": enc, "decoder_path": dec, "bank_path": save_bank(directory / "bank.pt", layer)}
    run_export_onnx(make_params(), out_dir=directory / "onnx", **paths)
    return {"onnx_dir": directory / "onnx", **paths}


@pytest.fixture(scope="module")
def export_at(tmp_path_factory: pytest.TempPathFactory) -> Callable[[tuple[str, float]], dict[str, Path]]:
    """depth -> export_models at that AdaIN depth, each exported once per module."""
    cache: dict[tuple[str, float], dict[str, Path]] = {}

    def get(depth: tuple[str, float]) -> dict[str, Path]:
        if depth not in cache:
            cache[depth] = export_models(tmp_path_factory.mktemp(f"models-{depth_id(depth)}"), *depth)
        return cache[depth]

    return get


@pytest.fixture
def exported(export_at: Callable[[tuple[str, float]], dict[str, Path]]) -> dict[str, Path]:
    return export_at(DEEP)


ENGINES: dict[tuple[Path, str, str], Any] = {}  # converting the IR pair takes seconds: one engine per model


def engine_of(exported: dict[str, Path], backend: str, precision: str = "default", finish: Finish | None = None):
    key = (exported["decoder_path"], backend, precision)
    if key not in ENGINES:
        ENGINES[key] = demo_engine(backend, precision, Finish(), exported["encoder_path"], exported["decoder_path"])
    return ENGINES[key].with_finish(finish or Finish())


def runner_of(exported: dict[str, Path], backend: str, precision: str = "default", finish: Finish | None = None,
              bank_path: Path | None = None):
    return make_style_runner(engine_of(exported, backend, precision, finish), bank_path or exported["bank_path"])


@pytest.mark.parametrize(
    ("backend", "depth"), [("auto", DEEP), ("torch", SHALLOW)], ids=["auto", "torch-relu3_1"],
)
def test_run_demo(export_at: Callable, tmp_path: Path, backend: str, depth: tuple[str, float]) -> None:
    exported = export_at(depth)
    params = make_params(frames=5, fps=10, backend=backend)
    rec = run_demo(params, blob_dir=tmp_path / "no-blob", out_dir=tmp_path / "demo", **exported)
    out = tmp_path / "demo"
    assert json.loads((out / "demo.json").read_text()) == json.loads(json.dumps(rec))
    assert rec["frames"] == 5 and rec["backend"] == backend and rec["blob"] is None
    used = "torch" if backend == "torch" or (backend == "auto" and torch.cuda.is_available()) else "openvino"
    assert rec["engine"].startswith(used) and rec["finish"] == Finish.from_params(params).record()
    assert count_frames(out / "demo.mp4")[:3] == (5, 2 * SIZE[0], SIZE[1])
    pipe = json.loads((out / "oak_pipeline.json").read_text())
    assert "NeuralNetwork" in node_names(pipe) and pipe["stylepipe"]["blob"] is None
    channels = json.loads((out / "oak_pipeline_styles.json").read_text())["stylepipe"]["style_channels"]
    layer = torch.load(exported["bank_path"], weights_only=True)["layer"]
    assert channels == rec["style_channels"] == TAP_CHANNELS[layer]


def as_frame(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_the_host_runner_shows_the_engines_stylised_frame(export_at: Callable, backend: str,
                                                          depth: tuple[str, float]) -> None:
    """Each frame is the engine's output for it (any frame size: padded and cropped back), stylised: far
    from the input; the runner adds no inference of its own."""
    exported = export_at(depth)
    runner = runner_of(exported, backend)
    bank = StyleBank.load(exported["bank_path"])
    for size in (SIZE, (45, 30)):
        frame = next(ken_burns(load_source_image(), 1, size))
        shown = runner(frame)
        assert shown.shape == (size[1], size[0], 3) and shown.dtype == np.uint8
        assert np.abs(shown.astype(int) - frame.astype(int)).mean() > 20  # stylised, not the photo
        if size == SIZE:  # a multiple of the encoder's grid: the engine's frame itself
            expected = runner.engine.frame(to_tensor(frame)[None], StyleTarget(bank.mean[:1], bank.std[:1]))[0]
            assert np.abs(shown.astype(int) - as_frame(expected).astype(int)).max() <= 1


def test_openvino_and_torch_show_the_same_frame_at_f32(exported: dict[str, Path]) -> None:
    frame = next(ken_burns(load_source_image(), 1, SIZE))
    shown = {backend: runner_of(exported, backend, "f32")(frame).astype(int) for backend in ("openvino", "torch")}
    assert np.abs(shown["openvino"] - shown["torch"]).max() <= 1


def test_backend_and_precision_are_checked(exported: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"demo.backend 'onnxruntime' is not supported: expected one of \['auto', "
                                         r"'torch', 'openvino'\]"):
        engine_of(exported, "onnxruntime")
    with pytest.raises(InputError, match=r"demo.precision 'int8' is not supported"):
        engine_of(exported, "openvino", "int8")
    with pytest.raises(ValueError, match=r"demo.backend"):
        make_params(backend="onnxruntime")
    assert engine_of(exported, "torch", "bf16").describe() == "torch (bf16, cpu)"


def test_style_keys_cycle_and_quit() -> None:
    cycler = StyleCycler(["a", "b", "c"])
    assert cycler.on_key("n") == "switch" and cycler.name == "b"
    assert cycler.on_key("right") == "switch" and cycler.on_key("right") == "switch" and cycler.name == "a"
    assert cycler.on_key("p") == "switch" and cycler.name == "c"
    assert cycler.on_key("x") is None and cycler.on_key(None) is None and cycler.name == "c"
    assert cycler.on_key("q") == "quit"
    assert StyleCycler(["only"]).on_key("n") is None
    with pytest.raises(ValueError, match="out of range"):
        StyleCycler(["a"], 3)


class FakeDisplay:
    """Display stand-in: plays back keys, one per shown frame, and keeps the labels' frames."""

    def __init__(self, keys: list[str | None]) -> None:
        self.keys, self.shown, self.open = list(keys), [], True

    def show(self, frame: np.ndarray) -> None:
        self.shown.append(frame)

    def key(self) -> str | None:
        return self.keys.pop(0) if self.keys else None


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_host_style_runner_switches_styles_on_keys(export_at: Callable, backend: str, depth: tuple[str, float]) -> None:
    runner = runner_of(export_at(depth), backend, "f32")
    frame = next(ken_burns(load_source_image(), 1, SIZE))
    assert runner.label() == f"a ({backend} f32, CPU)"
    display = FakeDisplay([None, "n", None, "q", None])
    info = stream(iter([frame] * 8), runner, None, 10, display)  # type: ignore[arg-type]
    assert info["frames"] == 4 and runner.cycler.name == "b"  # q on the 4th frame stops the stream
    below_text = SIZE[1] * 3 // 4  # the FPS text box (rows 3-17 here) is as wide as the FPS figure
    right = [f[below_text:, SIZE[0] :] for f in display.shown]
    assert np.array_equal(right[0], right[1]) and not np.array_equal(right[1], right[2])


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_a_bank_of_another_layer_is_refused(exported: dict[str, Path], tmp_path: Path, backend: str) -> None:
    """The models are relu4_1 ones: a relu3_1 bank is named with both sides, whether it records its layer
    or only its channel count; the stage writes nothing."""
    shallow = save_bank(tmp_path / "shallow.pt", SHALLOW[0])
    with pytest.raises(StyleBankError, match=r"shallow\.pt: style statistics of encoder 'vgg16_hed' at relu3_1, "
                                          r"256 channels, but the model takes encoder 'vgg16_hed' at relu4_1, 512 "
                                          r"channels"):
        runner_of(exported, backend, bank_path=shallow)
    paths = {**exported, "bank_path": save_bank(tmp_path / "unrecorded.pt", SHALLOW[0], recorded=False)}
    with pytest.raises(StyleBankError, match=r"unrecorded\.pt: style statistics of 256 channels, but the model takes "
                                          r"encoder 'vgg16_hed' at relu4_1, 512 channels"):
        run_demo(make_params(frames=2, backend=backend), blob_dir=tmp_path / "no-blob", out_dir=tmp_path / "demo",
                 **paths)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_host_runner_matches_frames_to_the_banks_palette(exported: dict[str, Path], tmp_path: Path,
                                                          backend: str) -> None:
    """With finish.palette histogram every frame takes its style's palette from the bank (the engine's
    match at the demo's alpha 1), each style its own; with none, or a bank without palettes, it does not."""
    bank = torch.load(exported["bank_path"], weights_only=True)
    palette = torch.stack([torch.linspace(0.0, 0.3, 16).repeat(3, 1), torch.linspace(0.7, 1.0, 16).repeat(3, 1)])
    torch.save({**bank, "palette": palette}, tmp_path / "palette.pt")
    frame = next(ken_burns(load_source_image(), 1, SIZE))
    plain = runner_of(exported, backend)(frame)
    unmatched = runner_of(exported, backend, finish=Finish("none"), bank_path=tmp_path / "palette.pt")(frame)
    runner = runner_of(exported, backend, bank_path=tmp_path / "palette.pt")
    dark = runner(frame)
    runner.cycler.on_key("n")
    light = runner(frame)
    assert dark.max() <= 0.3 * 255 + 1 and light.min() >= 0.7 * 255 - 1
    for image in (plain, unmatched):  # the bank without palettes, or finish.palette none: unmatched
        assert image.max() > 0.3 * 255 + 1 and image.min() < 0.7 * 255 - 1


def steady_runner(exported: dict[str, Path], smoothing: Smoothing, flow_blend: float = 0.0):
    engine = engine_of(exported, "torch", "f32")
    return steadied(make_style_runner(engine, exported["bank_path"], smoothing=smoothing), flow_blend)


def test_the_host_demo_steadies_a_feed_as_stylize_steadies_a_video(exported: dict[str, Path]) -> None:
    """demo.feature_blend and demo.decoded_blend give the host's frames that `stylize` gives a video's (the
    same StableAdaIN, fed the same motion): carried over from frame to frame, steadier than frame by frame."""
    smoothing = Smoothing(decoded=0.8, features=0.95)
    frames = list(ken_burns(load_source_image(), 6, (128, 96)))
    runner = steady_runner(exported, smoothing)
    assert isinstance(runner, SteadyRunner) and isinstance(inner_runner(runner), StableStyleRunner)
    shown = [runner(frame) for frame in frames]
    engine, bank = inner_runner(runner).engine, StyleBank.load(exported["bank_path"])
    stable = StableAdaIN(engine, StyleTarget(bank.mean[:1], bank.std[:1]), 1.0, smoothing)
    for got, expected in zip(shown, stylise_frames(stable, (to_tensor(f) for f in frames)), strict=True):
        assert np.abs(got.astype(int) - as_frame(expected).astype(int)).max() <= 1
    plain = make_style_runner(engine, exported["bank_path"])
    per_frame = [plain(frame) for frame in frames]
    assert np.array_equal(shown[0], per_frame[0])  # a shot's first frame is the per-frame output
    assert all(np.abs(a.astype(int) - b.astype(int)).max() > 8 for a, b in zip(shown[1:], per_frame[1:], strict=True))
    assert warping_error(frames, shown) < warping_error(frames, per_frame)


def test_a_style_switch_starts_the_host_demos_shot_afresh(exported: dict[str, Path]) -> None:
    frames = list(ken_burns(load_source_image(), 4, SIZE))
    runner = steady_runner(exported, Smoothing(decoded=0.8, features=0.95), flow_blend=0.7)
    plain = make_style_runner(engine_of(exported, "torch", "f32"), exported["bank_path"], index=1)
    for frame in frames[:2]:
        runner(frame)
    inner_runner(runner).cycler.on_key("n")
    assert np.array_equal(runner(frames[2]), plain(frames[2]))  # style b's first frame: nothing carried over
    assert not np.array_equal(runner(frames[3]), plain(frames[3]))


def test_run_demo_records_the_host_blends(exported: dict[str, Path], tmp_path: Path) -> None:
    params = make_params(frames=3, backend="torch", feature_blend=0.95, decoded_blend=0.8, flow_blend=0.7)
    rec = run_demo(params, blob_dir=tmp_path / "no-blob", out_dir=tmp_path / "demo", **exported)
    assert (rec["feature_blend"], rec["decoded_blend"], rec["flow_blend"]) == (0.95, 0.8, 0.7)
    assert count_frames(tmp_path / "demo" / "demo.mp4")[0] == 3
    with pytest.raises(ValueError, match=r"demo\.feature_blend"):
        make_params(feature_blend=1.0)


def test_the_live_demo_says_which_blends_it_leaves_to_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys) -> None:
    from stylepipe import cli
    from stylepipe.demo import oak

    raw = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), {"demo": {"decoded_blend": 0.8}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    ran: dict[str, Any] = {}
    monkeypatch.setattr(oak, "run_live", lambda *args, **kwargs: ran.update(kwargs) or {"frames": 0})
    assert cli.main(["--params", str(tmp_path / "params.yaml"), "demo", "--live"]) == 0
    err = capsys.readouterr().err
    assert "warning: demo.decoded_blend steadies the host demo only" in err and ran["flow_blend"] == 0.0
