"""Host-side demo: stylise frames on the CPU (OpenVINO IR or ONNX Runtime), write H.264 side-by-side video.

No OpenCV: frames are numpy RGB uint8 arrays, text is drawn with PIL, video is written with PyAV, and
the optional live window is a matplotlib figure (which needs a display).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stylepipe import paths
from stylepipe.config import Params
from stylepipe.io import atomic_dir, write_json
from stylepipe.media import VideoWriter

Runner = Callable[[np.ndarray], np.ndarray]  # RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3)
BAKED = "adain_baked"


class DisplayError(RuntimeError):
    """A live window was requested but there is no display to show it on."""


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


def make_runner(backend: str, openvino_dir: Path, onnx_dir: Path) -> Runner:
    """The baked single-style model as a frame -> frame function on the CPU."""
    if backend == "openvino":
        from stylepipe.export.openvino import F32_CONFIG, compile_cpu

        xml = openvino_dir / f"{BAKED}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"{xml}: not found (run the export_openvino stage first)")
        compiled = compile_cpu(xml, F32_CONFIG)
        return lambda frame: to_frame(compiled({0: to_tensor(frame)})[compiled.output(0)])
    if backend == "onnxruntime":
        import onnxruntime as ort

        path = onnx_dir / f"{BAKED}.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run the export_onnx stage first)")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda frame: to_frame(sess.run(None, {"content": to_tensor(frame)})[0])
    raise ValueError(f"unknown demo backend {backend!r}: expected 'openvino' or 'onnxruntime'")


def compose(original: np.ndarray, stylised: np.ndarray, text: str) -> np.ndarray:
    """Side by side (original | stylised) with `text` drawn top-left on a dark box."""
    canvas = Image.fromarray(np.concatenate([original, stylised], axis=1))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, canvas.height // 18))
    x0, y0, x1, y1 = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 0), font=font)
    return np.asarray(canvas)


class Display:
    """A matplotlib window showing frames; `key()` returns the last key pressed (or None)."""

    def __init__(self, title: str) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise DisplayError("a live window was requested but no display is available (DISPLAY is unset): "
                               "record to a file instead (--record out.mp4)")  # fmt: skip
        import matplotlib.pyplot as plt

        self.plt = plt
        self.fig, ax = plt.subplots(num=title)
        ax.axis("off")
        self.image: Any = None
        self.ax, self._key = ax, None
        self.fig.canvas.mpl_connect("key_press_event", self._on_key)
        plt.show(block=False)

    def _on_key(self, event: Any) -> None:
        self._key = event.key

    def show(self, frame: np.ndarray) -> None:
        if self.image is None:
            self.image = self.ax.imshow(frame)
        else:
            self.image.set_data(frame)
        self.plt.pause(0.001)

    def key(self) -> str | None:
        key, self._key = self._key, None
        return key

    @property
    def open(self) -> bool:
        return self.plt.fignum_exists(self.fig.number)


def stream(
    frames: Iterable[np.ndarray],
    runner: Runner,
    out_path: Path | None,
    fps: int,
    display: Display | None = None,
) -> dict[str, Any]:
    """Stylise frames; write original | stylised with an FPS overlay to out_path and/or a live window."""
    count, infer_s = 0, 0.0
    with contextlib.ExitStack() as stack:
        writer: VideoWriter | None = None
        for frame in frames:
            start = time.perf_counter()
            stylised = runner(frame)
            infer_s += time.perf_counter() - start
            count += 1
            canvas = compose(frame, stylised, f"{count / infer_s:5.1f} FPS (CPU)")
            if out_path is not None and writer is None:
                writer = stack.enter_context(
                    VideoWriter(Path(out_path), fps, canvas.shape[1], canvas.shape[0])
                )
            if writer is not None:
                writer.write(canvas)
            if display is not None:
                display.show(canvas)
                if not display.open or display.key() == "q":
                    break
    if count == 0:
        raise ValueError("no frames to stylise")
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
    """RGB frames from a video file, or a webcam given as /dev/videoN (V4L2), resized to size=(w, h)."""
    source = str(source)
    options = {"format": "v4l2"} if source.startswith("/dev/video") else {}
    with av.open(source, **options) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if max_frames is not None and i >= max_frames:
                return
            yield _resize(frame.to_ndarray(format="rgb24"), size)


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
        raise ValueError("nothing to do: give an output file or ask for a live window")
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
) -> dict[str, Any]:
    """The `demo` stage: OAK pipeline JSONs, demo.mp4 rendered on the host from the clip, demo.json."""
    import torch

    from stylepipe.demo.clip import ken_burns, load_source_image
    from stylepipe.demo.oak import build_pipeline, save_pipeline

    size = (params.export.width, params.export.height)
    blob = blob_dir / "adain_baked.blob"
    blob_path = blob if blob.is_file() else None
    names = list(torch.load(bank_path, map_location="cpu", weights_only=True)["names"])
    runner = make_runner(params.demo.backend, openvino_dir, onnx_dir)
    with atomic_dir(out_dir) as tmp:
        save_pipeline(build_pipeline(blob_path, size, False), tmp / "oak_pipeline.json", blob_path)
        save_pipeline(build_pipeline(None, size, True), tmp / "oak_pipeline_styles.json", None)
        clip = ken_burns(load_source_image(source_image), params.demo.frames, size)
        video = render_video(clip, runner, tmp / "demo.mp4", params.demo.fps)
        record = {**video, "backend": params.demo.backend, "video": "demo.mp4", "size": list(size),
                  "blob": str(blob_path) if blob_path else None, "style_names": names,
                  "baked_style": names[params.export.style_index],
                  "source_image": str(source_image) if source_image else "skimage.data.astronaut",
                  "pipelines": ["oak_pipeline.json", "oak_pipeline_styles.json"]}  # fmt: skip
        write_json(tmp / "demo.json", record)
    return record
