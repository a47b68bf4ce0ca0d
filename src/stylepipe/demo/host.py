"""Host-side demo: stylise frames with OpenVINO IR or ONNX Runtime (CPU), or PyTorch (CUDA when present);
write H.264 side-by-side video and/or show a live window.

`stylepipe demo --host` runs the style-statistics model, so keys switch the style at runtime (n / right:
next, p / left: previous, q: quit), as on the OAK. The `demo` stage renders the baked single-style model.
No OpenCV: frames are numpy RGB uint8 arrays, text is drawn with PIL, video is written with PyAV, and
the optional live window is a matplotlib figure (which needs a display).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.errors import InputError, MissingInputError
from stylepipe.core.io import atomic_dir, write_json
from stylepipe.core.media import VideoWriter, iter_video_frames
from stylepipe.demo.ui import Display, StyleCycler, compose, load_bank, with_palette
from stylepipe.nn.statistics import StatsOrigin
from stylepipe.nn.temporal import ShotTracker, blend_previous

if TYPE_CHECKING:
    from stylepipe.adain.engine import Finish

Runner = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3)
BAKED = "adain_baked"
STATS = "adain_stats"
BACKENDS = ("openvino", "onnxruntime", "torch")
StatsInfer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (content, mean, std) -> output


def to_tensor(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1]: the exported models' input."""
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def to_frame(output: np.ndarray) -> np.ndarray:
    """Model output (1, 3, H, W) in [0, 1] -> RGB uint8 (H, W, 3)."""
    return (
        (np.clip(np.asarray(output, dtype=np.float32)[0], 0, 1) * 255 + 0.5)
        .astype(np.uint8)
        .transpose(1, 2, 0)
    )


def _require(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise MissingInputError(f"{path}: not found (run the {stage} stage first)")
    return path


@dataclass
class CpuModel:
    """An exported model on the CPU: named inputs -> output, and the shape of each input."""

    run: Callable[[dict[str, np.ndarray]], np.ndarray]
    input_shapes: dict[str, tuple[int, ...]]

    def stats_origin(self, source: Path) -> StatsOrigin:
        """The channel count of the style statistics the model takes (its style_mean input)."""
        shape = self.input_shapes.get("style_mean")
        if shape is None:
            raise InputError(f"{source}: no 'style_mean' input (inputs: {sorted(self.input_shapes)})")
        return StatsOrigin(int(np.prod(shape)))


def _cpu_model(backend: str, stem: str, openvino_dir: Path, onnx_dir: Path) -> tuple[CpuModel, Path]:
    """The exported model `stem` on the CPU (OpenVINO IR in f32, or ONNX Runtime), and its file."""
    if backend == "openvino":
        from stylepipe.export.openvino import F32_CONFIG, compile_cpu

        path = _require(openvino_dir / f"{stem}.xml", "export_openvino")
        compiled = compile_cpu(path, F32_CONFIG)
        output = compiled.output(0)
        shapes = {i.get_any_name(): tuple(i.get_shape()) for i in compiled.inputs}
        return CpuModel(lambda feeds: compiled(feeds)[output], shapes), path
    if backend == "onnxruntime":
        import onnxruntime as ort

        path = _require(onnx_dir / f"{stem}.onnx", "export_onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shapes = {i.name: tuple(i.shape) for i in sess.get_inputs()}
        return CpuModel(lambda feeds: sess.run(None, feeds)[0], shapes), path
    raise InputError(f"unknown demo backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def make_runner(backend: str, openvino_dir: Path, onnx_dir: Path) -> Runner:
    """The baked single-style model as a frame -> frame function on the CPU."""
    model, _ = _cpu_model(backend, BAKED, openvino_dir, onnx_dir)
    return lambda frame: to_frame(model.run({"content": to_tensor(frame)}))


class StyleRunner:
    """The style-statistics model as frame -> frame with the cycler's current style from the bank."""

    def __init__(self, infer: StatsInfer, bank: dict[str, Any], device: str, index: int = 0) -> None:
        self.infer, self.bank, self.device = infer, bank, device
        self.cycler = StyleCycler(bank["names"], index)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        i = self.cycler.index
        out = self.infer(to_tensor(frame), self.bank["mean"][i : i + 1], self.bank["std"][i : i + 1])
        return to_frame(with_palette(out, self.bank, i))

    def label(self) -> str:
        return f"{self.cycler.name} ({self.device})"


def _torch_infer(
    encoder_path: Path, decoder_path: Path, stats_scale: float, finish: Finish
) -> tuple[StatsInfer, str, StatsOrigin]:
    """The PyTorch stats model on CUDA when present (else the CPU): (infer, device label, what it takes)."""
    import torch

    from stylepipe.adain.export import StatsModel
    from stylepipe.adain.model import load_stylizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = StatsModel(load_stylizer(encoder_path, decoder_path), finish, stats_scale).eval().to(device)

    def infer(content: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            args = (torch.from_numpy(a).to(device) for a in (content, mean, std))
            return model(*args).cpu().numpy()

    return infer, device.type.upper(), model.origin


def make_style_runner(
    backend: str,
    bank_path: Path = paths.STYLE_BANK,
    openvino_dir: Path = paths.OPENVINO_DIR,
    onnx_dir: Path = paths.ONNX_DIR,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
    stats_scale: float = 1.0,
    index: int = 0,
    finish: Finish | None = None,
) -> StyleRunner:
    """The stats-input model on `backend`: OpenVINO IR / ONNX Runtime on the CPU, or PyTorch (CUDA if any)
    finished by `finish` (params `finish`; None: its defaults) as the exported graphs are; the style bank
    must fit it."""
    if backend == "torch":
        from stylepipe.adain.engine import Finish

        infer, device, origin = _torch_infer(encoder_path, decoder_path, stats_scale, finish or Finish())
        return StyleRunner(infer, load_bank(bank_path, origin), device, index)
    model, path = _cpu_model(backend, STATS, openvino_dir, onnx_dir)
    bank = load_bank(bank_path, model.stats_origin(path))
    return StyleRunner(lambda c, m, s: model.run({"content": c, "style_mean": m, "style_std": s}), bank, "CPU",
                       index)


class FlowBlendRunner:
    """A runner whose outputs are blended with the previous output along the input's optical flow
    (`nn.temporal`: `weight` of the warped previous output where the flow holds; a cut or a style switch
    starts afresh). Frame -> frame like the runner it wraps."""

    def __init__(self, runner: Runner, weight: float) -> None:
        self.runner, self.weight = runner, weight
        self.tracker, self.previous, self.style = ShotTracker(), None, self._style()

    def _style(self) -> int:
        cycler = getattr(self.runner, "cycler", None)
        return cycler.index if cycler is not None else 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        motion = self.tracker(frame)
        if self._style() != self.style:
            motion, self.style = None, self._style()
        self.previous = blend_previous(self.runner(frame), self.previous, motion, self.weight)
        return np.clip(np.rint(self.previous * 255.0), 0, 255).astype(np.uint8)


def with_flow_blend(runner: Runner, weight: float) -> Runner:
    """`runner` itself at weight 0, else wrapped in a FlowBlendRunner."""
    return FlowBlendRunner(runner, weight) if weight else runner


def overlay_text(runner: Runner, fps: float) -> str:
    """'12.3 FPS  <style> (<device>)' for a StyleRunner, '12.3 FPS (CPU)' for the baked model."""
    inner = runner.runner if isinstance(runner, FlowBlendRunner) else runner
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
    inner = runner.runner if isinstance(runner, FlowBlendRunner) else runner
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
    openvino_dir: Path = paths.OPENVINO_DIR,
    onnx_dir: Path = paths.ONNX_DIR,
    blob_dir: Path = paths.BLOB_DIR,
    bank_path: Path = paths.STYLE_BANK,
    out_dir: Path = paths.DEMO_DIR,
    source_image: Path | None = None,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
) -> dict[str, Any]:
    """The `demo` stage: OAK pipeline JSONs, demo.mp4 rendered on the host from the clip, demo.json."""
    from stylepipe.adain.engine import Finish
    from stylepipe.adain.export import exported_origin
    from stylepipe.demo.clip import ken_burns, load_source_image
    from stylepipe.demo.oak import build_pipeline, save_pipeline

    size = (params.export.width, params.export.height)
    blob = blob_dir / "adain_baked.blob"
    blob_path = blob if blob.is_file() else None
    stats_model = exported_origin(_require(onnx_dir / f"{STATS}.onnx", "export_onnx"))  # the styles blob's source
    names = load_bank(bank_path, stats_model)["names"]
    channels = stats_model.channels
    if params.demo.backend == "torch":
        runner: Runner = make_style_runner(
            "torch", bank_path, encoder_path=encoder_path, decoder_path=decoder_path,
            stats_scale=params.export.stats_scale, index=params.export.style_index,
            finish=Finish.from_params(params),
        )  # fmt: skip
    else:
        runner = make_runner(params.demo.backend, openvino_dir, onnx_dir)
    with atomic_dir(out_dir) as tmp:
        save_pipeline(build_pipeline(blob_path, size, False), tmp / "oak_pipeline.json", blob_path)
        save_pipeline(build_pipeline(None, size, True, channels), tmp / "oak_pipeline_styles.json", None, channels)
        clip = ken_burns(load_source_image(source_image), params.demo.frames, size)
        blended = with_flow_blend(runner, params.demo.flow_blend)
        video = render_video(clip, blended, tmp / "demo.mp4", params.demo.fps)
        record = {**video, "backend": params.demo.backend, "flow_blend": params.demo.flow_blend, "video": "demo.mp4",
                  "size": list(size),
                  "blob": str(blob_path) if blob_path else None, "style_names": names, "style_channels": channels,
                  "baked_style": names[params.export.style_index],
                  "source_image": str(source_image) if source_image else "skimage.data.astronaut",
                  "pipelines": ["oak_pipeline.json", "oak_pipeline_styles.json"]}  # fmt: skip
        write_json(tmp / "demo.json", record)
    return record
