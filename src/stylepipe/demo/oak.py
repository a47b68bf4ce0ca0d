"""The OAK-1 side (depthai 2.x): the on-device pipeline, its JSON package, and the live host-connected demo.

ColorCamera preview (BGR planar U8 at the model size) -> NeuralNetwork(blob) -> XLinkOut "nn", with the
frame the network saw on XLinkOut "preview". The style-statistics model adds XLinkIn "style" feeding
the network's style_mean/style_std inputs (reused until the next message), so styles switch at runtime
without reloading the blob. depthai 2.x builds and serialises all this without a device.

The video options run on the host, after the device (`HostFinish`): the palette match (a sort, no Myriad X
operation), optionally held per shot, and flow-guided blending with the previous output along the preview
frames' DIS flow (OpenCV on the host CPU). The blob itself stays per frame.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import depthai as dai
import numpy as np

from stylepipe.core.errors import InputError
from stylepipe.core.io import write_json
from stylepipe.core.media import VideoWriter
from stylepipe.demo.ui import Display, StyleCycler, compose, load_bank
from stylepipe.nn.palette import PaletteMap, apply_palette_map, palette_map
from stylepipe.nn.statistics import StatsOrigin
from stylepipe.nn.temporal import ShotTracker, blend_previous

STYLE_INPUTS = ("style_mean", "style_std")
CONTENT_INPUT = "content"


class NoDeviceError(SystemExit):
    """No OAK device is connected (exits the CLI with this message, no traceback)."""


def build_pipeline(
    blob_path: Path | None, size: tuple[int, int], with_style_input: bool, channels: int | None = None
) -> dai.Pipeline:
    """The OAK pipeline for a model of size=(width, height); blob_path None = offline, no blob set. The
    style-input variant needs `channels`, the width of the model's statistics (its AdaIN layer's)."""
    if with_style_input and not channels:
        raise ValueError("the style-input pipeline needs the channel count of the model's style statistics")
    width, height = size
    pipeline = dai.Pipeline()
    cam = pipeline.create(dai.node.ColorCamera)
    cam.setBoardSocket(dai.CameraBoardSocket.CAM_A)
    cam.setResolution(dai.ColorCameraProperties.SensorResolution.THE_1080_P)
    cam.setPreviewSize(width, height)
    cam.setInterleaved(False)
    cam.setColorOrder(dai.ColorCameraProperties.ColorOrder.BGR)
    cam.setFps(10)

    nn = pipeline.create(dai.node.NeuralNetwork)
    if blob_path is not None:
        nn.setBlobPath(Path(blob_path))
    nn.setNumInferenceThreads(1)
    content = nn.inputs[CONTENT_INPUT] if with_style_input else nn.input
    content.setBlocking(False)
    content.setQueueSize(1)
    cam.preview.link(content)

    nn_out = pipeline.create(dai.node.XLinkOut)
    nn_out.setStreamName("nn")
    nn.out.link(nn_out.input)
    preview = pipeline.create(dai.node.XLinkOut)
    preview.setStreamName("preview")
    (nn.passthroughs[CONTENT_INPUT] if with_style_input else nn.passthrough).link(preview.input)

    if with_style_input:
        style = pipeline.create(dai.node.XLinkIn)
        style.setStreamName("style")
        style.setMaxDataSize(len(STYLE_INPUTS) * channels * 4 * 2)  # mean and std as float32, twice over
        for name in STYLE_INPUTS:
            inp = nn.inputs[name]
            inp.setReusePreviousMessage(True)  # keep the last style until a new one arrives
            inp.setQueueSize(1)
            inp.setBlocking(False)
            style.out.link(inp)
    return pipeline


def pipeline_info(
    blob_path: Path | None, size: tuple[int, int], with_style_input: bool, channels: int | None = None
) -> dict[str, Any]:
    """What the JSON package cannot say by itself: the blob (or its absence) and the stream contract."""
    return {
        "blob": str(blob_path) if blob_path else None,
        "blob_note": None if blob_path else "no blob compiled (offline): NeuralNetwork has no blob set",
        "model_size": {"width": size[0], "height": size[1]},
        "camera_frames": "BGR U8 planar (the blob's preprocessing turns them into RGB [0, 1])",
        "streams": {"out": ["nn", "preview"], "in": ["style"] if with_style_input else []},
        "style_inputs": list(STYLE_INPUTS) if with_style_input else [],
        "style_channels": channels if with_style_input else None,
        "depthai_version": dai.__version__,
    }


def save_pipeline(
    pipeline: dai.Pipeline, path: Path, blob_path: Path | None = None, channels: int | None = None
) -> dict[str, Any]:
    """Write pipeline.serializeToJson() plus a 'stylepipe' section describing blob and streams
    (`channels`: the style statistics' width, for the style-input variant)."""
    data = pipeline.serializeToJson()
    nodes = [n for _, n in data["pipeline"]["nodes"]]
    size = next((n["properties"]["previewWidth"], n["properties"]["previewHeight"]) for n in nodes
                if n["name"] == "ColorCamera")  # fmt: skip
    data["stylepipe"] = pipeline_info(blob_path, size, any(n["name"] == "XLinkIn" for n in nodes), channels)
    write_json(path, data)
    return data


def style_message(mean: np.ndarray, std: np.ndarray, channels: int) -> dai.NNData:
    """NNData carrying one style's statistics as layers named after the network's style inputs; each must
    hold `channels` values (the blob's style input width), which a style bank of another layer does not."""
    values = [np.asarray(a, dtype=np.float32).ravel() for a in (mean, std)]
    if any(v.size != channels for v in values):
        raise InputError(f"style statistics of {values[0].size}/{values[1].size} values, but the network's "
                         f"{' and '.join(STYLE_INPUTS)} inputs take {channels}")
    msg = dai.NNData()
    for name, v in zip(STYLE_INPUTS, values, strict=True):
        msg.setLayer(name, v.tolist())
    return msg


def blob_stats_channels(blob_path: Path) -> int:
    """The channel count of a stats-input blob's style_mean input ([1, C, 1, 1] in either dim order)."""
    inputs = dai.OpenVINO.Blob(str(blob_path)).networkInputs
    if STYLE_INPUTS[0] not in inputs:
        raise InputError(f"{blob_path}: no {STYLE_INPUTS[0]!r} input (inputs: {sorted(inputs)}): not the "
                         "style-statistics blob (adain_stats.blob)")
    return math.prod(inputs[STYLE_INPUTS[0]].dims)


def _planar_bgr_to_rgb(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.ascontiguousarray(frame.reshape(3, height, width)[::-1].transpose(1, 2, 0))


def _nn_output(msg: dai.NNData, width: int, height: int) -> np.ndarray:
    return np.asarray(msg.getFirstLayerFp16(), dtype=np.float32).reshape(1, 3, height, width)


class HostOnlyWarning(UserWarning):
    """A demo setting that the OAK-1 path leaves out: it needs the network split, which only the host has."""


class HostFinish:
    """The host's work on each output of the device, in frame order: the output [1, 3, H, W] matched to style
    `index`'s palette from the bank (the map's source quantiles kept across a shot by `palette_momentum`,
    0..1), then blended with the previous output along the preview frames' optical flow (`flow_blend`, 0..<1,
    `nn.temporal`). A cut in the preview or a style switch starts afresh. With both 0 it is the per-frame
    palette match."""

    def __init__(self, bank: dict[str, Any] | None, flow_blend: float = 0.0, palette_momentum: float = 0.0) -> None:
        if not 0.0 <= flow_blend < 1.0:
            raise InputError(f"demo.flow_blend {flow_blend} is out of range: expected 0 <= flow_blend < 1")
        if not 0.0 <= palette_momentum <= 1.0:
            raise InputError(f"palette_momentum {palette_momentum} is out of range: expected 0..1")
        if palette_momentum and (bank is None or bank["palette"] is None):
            raise InputError("palette_momentum holds the match to the painting's palette, but the style bank "
                             "has no palettes")
        self.bank, self.flow_blend, self.palette_momentum = bank, flow_blend, palette_momentum
        self.tracker = ShotTracker() if flow_blend or palette_momentum else None
        self.style: int | None = None
        self.map: PaletteMap | None = None
        self.previous: np.ndarray | None = None

    def __call__(self, original: np.ndarray, output: np.ndarray, index: int) -> np.ndarray:
        """`original` the preview frame (RGB uint8 [H, W, 3]), `output` the device's [1, 3, H, W] for it ->
        the finished RGB uint8 frame."""
        motion = None if self.tracker is None else self.tracker(original)
        if index != self.style:
            motion, self.style = None, index
        if motion is None:
            self.map = None
        finished = self._palette(np.ascontiguousarray(output, np.float32), index)
        if self.flow_blend:
            finished = blend_previous(finished, self.previous, motion, self.flow_blend)
            self.previous = finished
        return (np.clip(finished, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _palette(self, output: np.ndarray, index: int) -> np.ndarray:
        """[H, W, 3] float32: the output matched to the style's palette, or as it is without palettes."""
        if self.bank is None or self.bank["palette"] is None:
            return output[0].transpose(1, 2, 0)
        import torch

        image = torch.from_numpy(output)
        mapping = palette_map(image, torch.from_numpy(self.bank["palette"][index : index + 1]))
        if self.map is not None and self.palette_momentum:
            keep = self.palette_momentum
            mapping = PaletteMap(keep * self.map.own + (1.0 - keep) * mapping.own, mapping.target)
        self.map = mapping
        return apply_palette_map(image, mapping).numpy()[0].transpose(1, 2, 0)


def find_device() -> Any:
    """The first available OAK, or NoDeviceError."""
    devices = dai.Device.getAllAvailableDevices()
    if not devices:
        raise NoDeviceError(
            "no OAK device connected: plug in the OAK-1 (USB3) and check `lsusb` / udev rules"
        )
    return devices[0]


def run_live(
    blob_path: Path | None,
    size: tuple[int, int],
    bank_path: Path | None = None,
    with_style_input: bool = False,
    record: Path | None = None,
    show: bool = True,
    max_frames: int | None = None,
    flow_blend: float = 0.0,
) -> dict[str, Any]:
    """Run on a connected OAK: side-by-side original | stylised with FPS; with the stats-input blob n/right and
    p/left switch styles (new statistics sent to the device, the blob stays loaded), q quits. The device's
    outputs are finished on the host by `HostFinish` (palette match, `flow_blend`: demo.flow_blend)."""
    device_info = find_device()
    if blob_path is None or not Path(blob_path).is_file():
        raise NoDeviceError(
            f"no blob at {blob_path}: set blob.enabled (online) or blob.path, then compile_blob"
        )
    display = Display("stylepipe OAK-1") if show else None
    if with_style_input and bank_path is None:
        raise InputError("the style-switching demo needs the style bank (models/adain/style_bank.pt)")
    bank = load_bank(bank_path, StatsOrigin(blob_stats_channels(blob_path))) if with_style_input else None
    channels = bank["channels"] if bank else None
    finish = HostFinish(bank, flow_blend)
    width, height = size
    cycler = StyleCycler(bank["names"] if bank else ["baked"])
    frames, start = 0, time.perf_counter()
    writer = VideoWriter(Path(record), 10, 2 * width, height) if record else None
    try:
        with dai.Device(build_pipeline(Path(blob_path), size, with_style_input, channels), device_info) as device:
            q_prev, q_nn = device.getOutputQueue("preview", 4, False), device.getOutputQueue("nn", 4, False)
            q_style = device.getInputQueue("style") if bank else None
            if q_style is not None:
                q_style.send(style_message(bank["mean"][0], bank["std"][0], channels))
            while max_frames is None or frames < max_frames:
                original = _planar_bgr_to_rgb(q_prev.get().getFrame(), width, height)
                stylised = finish(original, _nn_output(q_nn.get(), width, height), cycler.index)
                frames += 1
                fps = frames / (time.perf_counter() - start)
                label = f"{fps:4.1f} FPS" + (f"  {cycler.name} (OAK-1)" if bank else "")
                canvas = compose(original, stylised, label)
                if writer is not None:
                    writer.write(canvas)
                if display is not None:
                    display.show(canvas)
                    action = cycler.on_key(display.key())
                    if action == "quit" or not display.open:
                        break
                    if action == "switch" and q_style is not None:
                        i = cycler.index
                        q_style.send(style_message(bank["mean"][i], bank["std"][i], channels))
    finally:
        if writer is not None:
            writer.close()
    return {
        "frames": frames,
        "fps": frames / (time.perf_counter() - start),
        "record": str(record) if record else None,
    }

