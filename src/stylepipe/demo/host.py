"""Host-side demo: stylise frames through the AdaIN inference engine (`adain.engine`): OpenVINO on the
CPU or PyTorch (CUDA when present), the backends `stylize` runs; write H.264 side-by-side video and/or show
a live window.

`demo.backend` (auto | torch | openvino) and `demo.precision` (default | f32 | bf16) pick the engine's
backend: auto is OpenVINO on a CPU (the encoder/decoder IR pair converted from the trained weights at
start, then compiled per frame size) and PyTorch on CUDA. Frames are finished by the engine with params
`finish` (fine detail, then the painting's palette at the style strength, alpha 1 here), as `stylize`
finishes them. `demo.feature_blend`, `demo.decoded_blend` and `demo.flow_blend` steady the feed as
`stylize` steadies a video (`adain.video.StableAdaIN`, then the flow blend of the finished output). Keys
switch the style at runtime (n / right: next, p / left: previous, q: quit), as on the OAK; the `demo`
stage renders `export.style_index`, the style baked into the blob. The exported ONNX graphs are not run
here: export_onnx checks them against this engine with ONNX Runtime.
No OpenCV: frames are numpy RGB uint8 arrays, text is drawn with PIL, video is written with PyAV, and
the optional live window is a matplotlib figure (which needs a display).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from stylepipe.core import paths
from stylepipe.core.config import Common, Params
from stylepipe.core.errors import InputError, MissingInputError
from stylepipe.core.io import atomic_dir, write_json
from stylepipe.core.media import VideoWriter, iter_video_frames
from stylepipe.demo.ui import Display, StyleCycler, compose, load_bank
from stylepipe.nn.temporal import Motion, ShotTracker, blend_previous

if TYPE_CHECKING:
    import torch

    from stylepipe.adain.engine import Engine, Finish, StyleTarget
    from stylepipe.adain.video import Smoothing, StableAdaIN
    from stylepipe.nn.statistics import StyleBank

Runner = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3)
STATS = "adain_stats"
BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("default", "f32", "bf16")  # int8 needs a quantised IR: a model folder's (`stylize --model`)


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float32 [3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32) / 255.0)


def to_frame(output: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> RGB uint8 (H, W, 3)."""
    image = output.detach().float().cpu().clamp(0, 1).numpy()
    return (image * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _require(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise MissingInputError(f"{path}: not found (run the {stage} stage first)")
    return path


def demo_engine(backend: str, precision: str, finish: Finish, encoder_path: Path = paths.ENCODER,
                decoder_path: Path = paths.DECODER, common: Common | None = None) -> Engine:
    """The trained model on the engine `backend` picks (auto: OpenVINO on a CPU, PyTorch on CUDA) in
    `precision` (default: OpenVINO's CPU plugin choice, or the runtime's for PyTorch)."""

    from stylepipe.adain.fast import torch_engine
    from stylepipe.adain.model import load_stylizer
    from stylepipe.core.runtime import resolve_runtime

    if backend not in BACKENDS:
        raise InputError(f"demo.backend {backend!r} is not supported: expected one of {list(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError(f"demo.precision {precision!r} is not supported: expected one of {list(PRECISIONS)}")
    model = load_stylizer(encoder_path, decoder_path)
    rt = resolve_runtime(common or Common())
    if backend == "torch" or (backend == "auto" and rt.device.type == "cuda"):
        if precision != "default":
            rt = replace(rt, bf16=precision == "bf16")
        return torch_engine(model, rt, finish)
    return _openvino_engine(model, encoder_path, decoder_path, precision, finish)


def _openvino_engine(model: Any, encoder_path: Path, decoder_path: Path, precision: str, finish: Finish) -> Engine:
    """The OpenVINO backend on the IR pair converted from exactly these weights (in a temporary folder: the
    backend keeps the models it read)."""
    from stylepipe.adain.engine import Engine
    from stylepipe.adain.ir import OpenVINOBackend, write_ir
    from stylepipe.core.io import file_digest
    from stylepipe.nn.statistics import StatsOrigin

    source = {"encoder_sha256": file_digest(encoder_path), "decoder_sha256": file_digest(decoder_path)}
    with tempfile.TemporaryDirectory(prefix="stylepipe-demo-ir-") as tmp:
        write_ir(model.encoder, model.decoder, Path(tmp), source)
        backend = OpenVINOBackend(Path(tmp), precision)
    return Engine(backend, StatsOrigin.of(model), model.encoder.stride, finish)


class StyleRunner:
    """Frame -> frame through the engine, towards the cycler's current style of the bank (alpha 1, any
    frame size: padded to the encoder's grid and cropped back)."""

    def __init__(self, engine: Engine, bank: StyleBank, index: int = 0) -> None:
        self.engine, self.bank = engine, bank
        self.cycler = StyleCycler(bank.names, index)

    def target(self) -> StyleTarget:
        """The current style's statistics and palette."""
        from stylepipe.adain.engine import StyleTarget

        i, palette = self.cycler.index, self.bank.palette
        return StyleTarget(self.bank.mean[i : i + 1], self.bank.std[i : i + 1],
                           None if palette is None else palette[i : i + 1])

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import torch

        from stylepipe.core.tiling import pad_to_grid

        padded, (h, w) = pad_to_grid(to_tensor(frame)[None])
        with torch.no_grad():
            out = self._stylise(padded)
        return to_frame(out[0, :, :h, :w])

    def _stylise(self, padded: torch.Tensor) -> torch.Tensor:
        return self.engine.frame(padded, self.target())

    def label(self) -> str:
        backend = self.engine.backend
        return f"{self.cycler.name} ({backend.name} {backend.precision}, {backend.device.type.upper()})"


class StableStyleRunner(StyleRunner):
    """A StyleRunner for consecutive frames: `adain.video.StableAdaIN` with `smoothing` towards the current
    style, told each frame's motion by `follow` (a `SteadyRunner` tracks it, and passes None at a cut or a
    style switch)."""

    def __init__(self, engine: Engine, bank: StyleBank, smoothing: Smoothing, index: int = 0) -> None:
        super().__init__(engine, bank, index)
        self.smoothing = smoothing
        self._stable = self._new_shot()

    def _new_shot(self) -> StableAdaIN:
        from stylepipe.adain.video import StableAdaIN

        return StableAdaIN(self.engine, self.target(), 1.0, self.smoothing)

    def follow(self, motion: Motion | None) -> None:
        """The next frame's motion from the previous one; None starts a shot, towards the style current now."""
        if motion is None:
            self._stable = self._new_shot()
        self._stable.follow(motion)

    def _stylise(self, padded: torch.Tensor) -> torch.Tensor:
        return self._stable(padded)


def make_style_runner(engine: Engine, bank_path: Path = paths.STYLE_BANK, index: int = 0,
                      smoothing: Smoothing | None = None) -> StyleRunner:
    """A runner over `engine` with the style bank at `bank_path`, which must fit the engine's model; a
    StableStyleRunner where `smoothing` is active."""
    from stylepipe.nn.statistics import StyleBank

    bank = StyleBank.load_trained(bank_path, engine.origin)
    if smoothing is not None and smoothing.active:
        return StableStyleRunner(engine, bank, smoothing, index)
    return StyleRunner(engine, bank, index)


def runner_from_params(params: Params, bank_path: Path = paths.STYLE_BANK, encoder_path: Path = paths.ENCODER,
                       decoder_path: Path = paths.DECODER) -> Runner:
    """The host demo's runner as params set it: demo.backend and demo.precision, finished by params
    `finish`, starting at export.style_index, steadied by demo.feature_blend, demo.decoded_blend and
    demo.flow_blend (`steadied`)."""
    from stylepipe.adain.engine import Finish
    from stylepipe.adain.video import Smoothing

    demo = params.demo
    engine = demo_engine(demo.backend, demo.precision, Finish.from_params(params), encoder_path, decoder_path,
                         params.common)
    smoothing = Smoothing(decoded=demo.decoded_blend, features=demo.feature_blend)
    return steadied(make_style_runner(engine, bank_path, params.export.style_index, smoothing), demo.flow_blend)


class SteadyRunner:
    """A runner fed consecutive frames: it tracks the input's optical flow (`nn.temporal.ShotTracker`), tells
    a runner that keeps state (a `follow(motion)` method, as `apply.stylise_frames` does) each frame's
    motion, and blends each output with the previous one along the flow (`weight` of the warped previous
    output where the flow holds). A cut or a style switch starts afresh. Frame -> frame like the runner it
    wraps."""

    def __init__(self, runner: Runner, weight: float) -> None:
        self.runner, self.weight = runner, weight
        self._follow = getattr(runner, "follow", None)
        self.tracker, self.previous, self.style = ShotTracker(), None, self._style()

    def _style(self) -> int:
        cycler = getattr(self.runner, "cycler", None)
        return cycler.index if cycler is not None else 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        motion = self.tracker(frame)
        if self._style() != self.style:
            motion, self.style = None, self._style()
        if self._follow is not None:
            self._follow(motion)
        out = self.runner(frame)
        if not self.weight:
            return out
        self.previous = blend_previous(out, self.previous, motion, self.weight)
        return np.clip(np.rint(self.previous * 255.0), 0, 255).astype(np.uint8)


def steadied(runner: Runner, flow_blend: float) -> Runner:
    """`runner` wrapped in a SteadyRunner where it keeps state across frames or `flow_blend` > 0, else
    itself."""
    return SteadyRunner(runner, flow_blend) if flow_blend or hasattr(runner, "follow") else runner


def inner_runner(runner: Runner) -> Runner:
    """The runner a SteadyRunner wraps, or `runner` itself."""
    return runner.runner if isinstance(runner, SteadyRunner) else runner


def overlay_text(runner: Runner, fps: float) -> str:
    """'12.3 FPS  <style> (<device>)' for a StyleRunner, '12.3 FPS (CPU)' for the baked model."""
    inner = inner_runner(runner)
    label = inner.label() if isinstance(inner, StyleRunner) else "(CPU)"
    return f"{fps:5.1f} FPS  {label}"


def stream(
    frames: Iterable[np.ndarray],
    runner: Runner,
    out_path: Path | None,
    fps: int,
    display: Display | None = None,
) -> dict[str, Any]:
    """Stylise frames; write original | stylised with an FPS overlay to out_path and/or a live window
    (where q quits and, with a StyleRunner, n/p switch styles)."""
    count, infer_s = 0, 0.0
    inner = inner_runner(runner)
    cycler = inner.cycler if isinstance(inner, StyleRunner) else StyleCycler(["baked"])
    with contextlib.ExitStack() as stack:
        writer: VideoWriter | None = None
        for frame in frames:
            start = time.perf_counter()
            stylised = runner(frame)
            infer_s += time.perf_counter() - start
            count += 1
            canvas = compose(frame, stylised, overlay_text(runner, count / infer_s))
            if out_path is not None and writer is None:
                writer = stack.enter_context(
                    VideoWriter(Path(out_path), fps, canvas.shape[1], canvas.shape[0])
                )
            if writer is not None:
                writer.write(canvas)
            if display is not None:
                display.show(canvas)
                if not display.open or cycler.on_key(display.key()) == "quit":
                    break
    if count == 0:
        raise InputError("no frames to stylise")
    return {"frames": count, "fps": fps, "inference_fps": count / infer_s, "inference_s": infer_s}


def render_video(
    frames_iter: Iterable[np.ndarray], runner: Runner, out_path: Path, fps: int
) -> dict[str, Any]:
    """Stylise every frame, write original | stylised side by side with an FPS overlay to an H.264 mp4."""
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    return stream(frames_iter, runner, Path(out_path), fps)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


def read_frames(
    source: str | Path, size: tuple[int, int], max_frames: int | None = None
) -> Iterator[np.ndarray]:
    """RGB frames from a video file (upright: its display-matrix rotation applied), or a webcam given as
    /dev/videoN (V4L2), resized to size=(w, h)."""
    source = str(source)
    options = {"format": "v4l2"} if source.startswith("/dev/video") else None
    for frame in islice(iter_video_frames(source, options), max_frames):
        yield _resize(frame, size)


def run_host(
    source: str | Path,
    runner: Runner,
    out_path: Path | None,
    size: tuple[int, int],
    fps: int = 12,
    show: bool = False,
    max_frames: int | None = None,
) -> dict[str, Any]:
    """Stylise a video file or webcam (/dev/videoN); write to out_path and/or show a live window
    (raises DisplayError up front when a window is asked for and there is no display)."""
    if out_path is None and not show:
        raise InputError("nothing to do: give an output file or ask for a live window")
    display = Display("stylepipe") if show else None
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    return stream(read_frames(source, size, max_frames), runner, out_path, fps, display)


def run_demo(
    params: Params,
    onnx_dir: Path = paths.ONNX_DIR,
    blob_dir: Path = paths.BLOB_DIR,
    bank_path: Path = paths.STYLE_BANK,
    out_dir: Path = paths.DEMO_DIR,
    source_image: Path | None = None,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
) -> dict[str, Any]:
    """The `demo` stage: OAK pipeline JSONs, demo.mp4 rendered on the host from the clip through the engine,
    demo.json."""
    from stylepipe.adain.export import exported_origin
    from stylepipe.demo.clip import ken_burns, load_source_image
    from stylepipe.demo.oak import build_pipeline, save_pipeline

    size = (params.export.width, params.export.height)
    blob = blob_dir / "adain_baked.blob"
    blob_path = blob if blob.is_file() else None
    stats_model = exported_origin(_require(onnx_dir / f"{STATS}.onnx", "export_onnx"))  # the styles blob's source
    names = load_bank(bank_path, stats_model)["names"]
    channels = stats_model.channels
    runner = runner_from_params(params, bank_path, encoder_path, decoder_path)
    with atomic_dir(out_dir) as tmp:
        save_pipeline(build_pipeline(blob_path, size, False), tmp / "oak_pipeline.json", blob_path)
        save_pipeline(build_pipeline(None, size, True, channels), tmp / "oak_pipeline_styles.json", None, channels)
        clip = ken_burns(load_source_image(source_image), params.demo.frames, size)
        video = render_video(clip, runner, tmp / "demo.mp4", params.demo.fps)
        engine = inner_runner(runner).engine
        record = {**video, "backend": params.demo.backend, "precision": params.demo.precision,
                  "engine": engine.describe(), "finish": engine.finish_settings.record(),
                  "feature_blend": params.demo.feature_blend, "decoded_blend": params.demo.decoded_blend,
                  "flow_blend": params.demo.flow_blend, "video": "demo.mp4", "size": list(size),
                  "blob": str(blob_path) if blob_path else None, "style_names": names, "style_channels": channels,
                  "baked_style": names[params.export.style_index],
                  "source_image": str(source_image) if source_image else "skimage.data.astronaut",
                  "pipelines": ["oak_pipeline.json", "oak_pipeline_styles.json"]}  # fmt: skip
        write_json(tmp / "demo.json", record)
    return record
