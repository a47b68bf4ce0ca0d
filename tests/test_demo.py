"""Demo: the OAK pipeline package (no device needed), the no-device error, host-side video rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
import yaml

from stylepipe.config import Params, deep_merge, parse_params
from stylepipe.demo.clip import ken_burns, load_source_image
from stylepipe.demo.host import (
    DisplayError,
    StyleCycler,
    make_style_runner,
    render_video,
    run_demo,
    run_host,
    stream,
)
from stylepipe.demo.oak import build_pipeline, run_live, save_pipeline

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 32)  # (width, height)


def make_params(**demo: Any) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = {"export": {"height": SIZE[1], "width": SIZE[0], "speed_repeats": 1}, "demo": demo}
    return parse_params(deep_merge(raw, over))


def node_names(data: dict) -> list[str]:
    return sorted(n["name"] for _, n in data["pipeline"]["nodes"])


def test_pipeline_json_without_device(tmp_path: Path) -> None:
    baked = save_pipeline(build_pipeline(None, SIZE, False), tmp_path / "baked.json")
    assert json.loads((tmp_path / "baked.json").read_text()) == json.loads(json.dumps(baked))
    assert node_names(baked) == ["ColorCamera", "NeuralNetwork", "XLinkOut", "XLinkOut"]
    cam = next(n for _, n in baked["pipeline"]["nodes"] if n["name"] == "ColorCamera")["properties"]
    assert (cam["previewWidth"], cam["previewHeight"]) == SIZE and cam["interleaved"] is False
    assert baked["stylepipe"]["blob"] is None and "offline" in baked["stylepipe"]["blob_note"]
    styles = save_pipeline(build_pipeline(None, SIZE, True), tmp_path / "styles.json")
    assert node_names(styles) == ["ColorCamera", "NeuralNetwork", "XLinkIn", "XLinkOut", "XLinkOut"]
    targets = {c["node2Input"] for c in styles["pipeline"]["connections"]}
    assert {"content", "style_mean", "style_std"} <= targets
    assert styles["stylepipe"]["streams"] == {"out": ["nn", "preview"], "in": ["style"]}


def test_run_live_without_device_is_clear() -> None:
    with pytest.raises(SystemExit, match="no OAK device connected"):
        run_live(None, SIZE, show=False)


def count_frames(path: Path) -> tuple[int, int, int, str]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return n, stream.codec_context.width, stream.codec_context.height, stream.codec_context.name


def test_render_video_is_decodable(tmp_path: Path) -> None:
    frames = list(ken_burns(load_source_image(), 7, SIZE))
    assert all(
        np.array_equal(a, b) for a, b in zip(frames, ken_burns(load_source_image(), 7, SIZE), strict=True)
    )
    out = tmp_path / "v.mp4"
    info = render_video(iter(frames), lambda f: 255 - f, out, fps=12)
    assert info["frames"] == 7 and info["inference_fps"] > 0
    assert count_frames(out) == (7, 2 * SIZE[0], SIZE[1], "h264")
    again = run_host(out, lambda f: f, tmp_path / "host.mp4", SIZE, fps=12, max_frames=5)
    assert again["frames"] == 5 and count_frames(tmp_path / "host.mp4")[0] == 5


def test_gui_without_display_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DisplayError, match="no display"):
        run_host(tmp_path / "missing.mp4", lambda f: f, None, SIZE, show=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from stylepipe.export.onnx import run_export_onnx
    from stylepipe.export.openvino import run_export_openvino
    from stylepipe.models.adain import Decoder, save_decoder
    from stylepipe.models.encoders import build_encoder

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    torch.save({"name": "vgg16_hed", "state_dict": build_encoder("vgg16_hed").state_dict()}, d / "enc.pt")
    save_decoder(Decoder("vgg16_hed"), d / "dec.pt")
    torch.save(
        {"names": ["a", "b"], "mean": torch.rand(2, 512, 1, 1), "std": torch.rand(2, 512, 1, 1) + 0.5},
        d / "bank.pt",
    )
    paths = {"encoder_path": d / "enc.pt", "decoder_path": d / "dec.pt", "bank_path": d / "bank.pt"}
    run_export_onnx(make_params(), out_dir=d / "onnx", **paths)
    run_export_openvino(make_params(), d / "onnx", d / "openvino", **paths)
    return {"onnx_dir": d / "onnx", "openvino_dir": d / "openvino", "bank_path": d / "bank.pt",
            "encoder_path": d / "enc.pt", "decoder_path": d / "dec.pt"}  # fmt: skip


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_run_demo(exported: dict[str, Path], tmp_path: Path, backend: str) -> None:
    params = make_params(frames=5, fps=10, backend=backend)
    rec = run_demo(params, blob_dir=tmp_path / "no-blob", out_dir=tmp_path / "demo", **exported)
    out = tmp_path / "demo"
    assert json.loads((out / "demo.json").read_text()) == json.loads(json.dumps(rec))
    assert rec["frames"] == 5 and rec["backend"] == backend and rec["blob"] is None
    assert count_frames(out / "demo.mp4")[:3] == (5, 2 * SIZE[0], SIZE[1])
    pipe = json.loads((out / "oak_pipeline.json").read_text())
    assert "NeuralNetwork" in node_names(pipe) and pipe["stylepipe"]["blob"] is None
    assert (out / "oak_pipeline_styles.json").is_file()


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


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_host_style_runner_switches_styles_on_keys(exported: dict[str, Path], backend: str) -> None:
    runner = make_style_runner(backend, **exported)
    frame = next(ken_burns(load_source_image(), 1, SIZE))
    first = runner(frame)
    assert first.shape == (SIZE[1], SIZE[0], 3) and first.dtype == np.uint8
    assert runner.label() == f"a ({'CUDA' if backend == 'torch' and torch.cuda.is_available() else 'CPU'})"
    display = FakeDisplay([None, "n", None, "q", None])
    info = stream(iter([frame] * 8), runner, None, 10, display)  # type: ignore[arg-type]
    assert info["frames"] == 4 and runner.cycler.name == "b"  # q on the 4th frame stops the stream
    below_text = SIZE[1] * 3 // 4  # the FPS text box (rows 3-17 here) is as wide as the FPS figure
    right = [f[below_text:, SIZE[0] :] for f in display.shown]
    assert np.array_equal(right[0], right[1]) and not np.array_equal(right[1], right[2])
    with pytest.raises(ValueError, match="unknown demo backend 'tflite'"):
        make_style_runner("tflite", **exported)
