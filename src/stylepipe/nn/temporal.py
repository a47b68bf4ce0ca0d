"""Temporal consistency of video: optical flow between input frames (OpenCV DIS on the CPU), warping, the
occlusion check and warping error of Lai et al. ("Learning Blind Video Temporal Consistency", ECCV 2018),
shot-cut detection and flow-guided blending of a stylised frame with the previous output.

Frames are numpy arrays [H, W, 3] (RGB, float32 in [0, 1] or uint8), as video decoders hand them over.
A flow `f` from frame a to frame b gives, for each pixel x of a, where it lies in b: a(x) ~ b(x + f(x)),
so `warp(b, f)` brings b (or b's stylised output) into a's pixel grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

SHOT_CUT = 0.5  # fewer consistent pixels than this share: the frames belong to different shots
PHOTOMETRIC_TOLERANCE = 0.05  # abs grey difference (0..1) below which a warped pixel shows the same point
PRESETS = {"ultrafast": cv2.DISOpticalFlow_PRESET_ULTRAFAST, "fast": cv2.DISOpticalFlow_PRESET_FAST,
           "medium": cv2.DISOpticalFlow_PRESET_MEDIUM}
T = TypeVar("T")  # a frame as `tracked`'s caller holds it


def as_float(frame: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from a uint8 or float frame."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame [H, W, 3], got shape {list(frame.shape)}")
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    return np.ascontiguousarray(frame, dtype=np.float32)


def grey(frame: np.ndarray) -> np.ndarray:
    """8-bit luminance of an RGB frame: what DIS takes."""
    if frame.dtype == np.uint8:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    luminance = cv2.max(cv2.cvtColor(as_float(frame), cv2.COLOR_RGB2GRAY), 0.0)  # convertScaleAbs takes |x|
    return cv2.convertScaleAbs(luminance, alpha=255.0)  # rounds and saturates at 255


@dataclass
class Flow:
    """DIS optical flow (OpenCV, `preset` medium by default: the metric's setting)."""

    preset: int = cv2.DISOpticalFlow_PRESET_MEDIUM
    _dis: cv2.DISOpticalFlow = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(self.preset)

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """[H, W, 2] flow (x, y) from `source` to `target` (frames or their grey images)."""
        a = source if source.ndim == 2 else grey(source)
        b = target if target.ndim == 2 else grey(target)
        if a.shape != b.shape:
            raise ValueError(f"frames of different sizes: {a.shape[::-1]} and {b.shape[::-1]}")
        return self._dis.calc(a, b, None)


@cache
def pixel_grid(h: int, w: int) -> np.ndarray:
    """[H, W, 2] float32 (x, y) coordinates of every pixel: the identity map that flows are added to."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([xs, ys], axis=2)
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` [H, W, C] sampled at x + flow(x) (bilinear unless `interpolation` says otherwise, edges
    replicated): image brought into the grid that the flow starts from."""
    coords = pixel_grid(*flow.shape[:2]) + flow
    return cv2.remap(image, coords, None, interpolation, borderMode=cv2.BORDER_REPLICATE)


def lands_inside(flow: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose flow ends inside the frame. The others have no counterpart in the target
    frame: a warp can only repeat its edge there, so a blend would smear the edge into the picture, and the
    warping error would score that smear as steady."""
    h, w = flow.shape[:2]
    ends = pixel_grid(h, w) + flow
    x, y = ends[..., 0], ends[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def _squared_norm(vectors: np.ndarray) -> np.ndarray:
    x, y = vectors[..., 0], vectors[..., 1]
    return x * x + y * y


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose forward flow ends inside the frame (`lands_inside`) and cancels out with the
    backward flow at its destination (Lai et al.'s check: |f + b'|^2 <= 0.01 (|f|^2 + |b'|^2) + 0.5); the
    others are occluded, mis-tracked or new in the frame."""
    back = warp(backward, forward)
    rhs = 0.01 * (_squared_norm(forward) + _squared_norm(back)) + 0.5
    return (_squared_norm(forward + back) <= rhs) & lands_inside(forward)


def pair_warping_error(next_in: np.ndarray, prev_in: np.ndarray, next_out: np.ndarray, prev_out: np.ndarray,
                       flow: Flow) -> float:
    """Warping error of one frame pair: the flow from input t+1 to input t (occluded pixels left out by the
    forward-backward check) warps output t onto t+1; the mean over valid pixels of the squared RGB
    difference (summed over the channels, values in [0, 1])."""
    a, b = grey(next_in), grey(prev_in)
    forward, backward = flow(a, b), flow(b, a)
    valid = consistent(forward, backward)
    if not valid.any():
        return 0.0
    diff = as_float(next_out) - warp(as_float(prev_out), forward)
    return float(np.sum(diff**2, axis=2)[valid].mean())


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], flow: Flow | None = None,
                  pairs: Sequence[int] | None = None) -> float:
    """Mean warping error over consecutive frame pairs of a clip (`pairs`: the frames t whose pair t-1, t
    counts; default all); `outputs` are the stylised `inputs` (pass `inputs` twice for the clip's own
    figure). Frames may differ in size from their outputs only if the outputs are resized to the inputs
    first."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} input frames but {len(outputs)} outputs")
    if len(inputs) < 2:
        raise ValueError("the warping error needs at least two frames")
    for i, (x, y) in enumerate(zip(inputs, outputs, strict=True)):
        if x.shape[:2] != y.shape[:2]:
            raise ValueError(f"frame {i}: input {x.shape[1]}x{x.shape[0]} but output {y.shape[1]}x{y.shape[0]}")
    flow = flow or Flow()
    pairs = range(1, len(inputs)) if pairs is None else pairs
    if not pairs:
        raise ValueError("the warping error needs at least one frame pair")
    errors = [pair_warping_error(inputs[t], inputs[t - 1], outputs[t], outputs[t - 1], flow) for t in pairs]
    return float(np.mean(errors))


def spatial_change(frames: Sequence[np.ndarray]) -> float:
    """Mean squared RGB difference between neighbouring pixels (across and down; summed over the channels,
    values in [0, 1]) over the frames: the detail a warp has to carry. The warping error grows with it as
    well as with flicker, since the warp's sub-pixel resampling and the flow's small errors move detail: an
    output with k times its input's contrast scores k^2 times the input's warping error however steady it
    is. Dividing the warping error's ratio by this one's leaves the flicker."""
    if not frames:
        raise ValueError("the spatial change needs at least one frame")
    changes = []
    for frame in frames:
        x = as_float(frame)
        across = np.sum((x[:, 1:] - x[:, :-1]) ** 2, axis=2).mean()
        down = np.sum((x[1:] - x[:-1]) ** 2, axis=2).mean()
        changes.append((across + down) / 2)
    return float(np.mean(changes))


def within_shots(inputs: Sequence[np.ndarray]) -> list[int]:
    """The frames t that continue frame t-1's shot (`ShotTracker`): the pairs the warping error is fair on,
    since across a cut no output should follow the previous one."""
    tracker = ShotTracker()
    return [t for t, frame in enumerate(inputs) if tracker(frame) is not None]


class Motion(NamedTuple):
    """How an input frame follows the previous one: the flow to it and the pixels that flow carries."""

    flow: np.ndarray  # [H, W, 2], current -> previous input
    reliable: np.ndarray  # [H, W] bool: not occluded (`consistent`: the flows there and back cancel out);
    # float32 shares in [0, 1] on a coarser grid (`motion_at`)


def downscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """`frame` with each side divided by `factor` (area averaging; at least 8 px); factor 1 returns it."""
    if factor == 1:
        return frame
    h, w = frame.shape[:2]
    return cv2.resize(frame, (max(8, w // factor), max(8, h // factor)), interpolation=cv2.INTER_AREA)


def resize_flow(flow: np.ndarray, h: int, w: int, interpolation: int) -> np.ndarray:
    """`flow` [H, W, 2] resized to h x w, its vectors scaled by the same ratios."""
    sh, sw = flow.shape[:2]
    resized = cv2.resize(flow, (w, h), interpolation=interpolation)
    resized *= np.array([w / sw, h / sh], dtype=np.float32)
    return resized


def upscale_motion(flow: np.ndarray, reliable: np.ndarray, h: int, w: int) -> Motion:
    """A `Motion` found on downscaled frames brought to h x w: the flow resized and its vectors stretched
    by the same ratios, the reliable mask resized by nearest neighbour."""
    if flow.shape[:2] == (h, w):
        return Motion(flow, reliable)
    mask = cv2.resize(reliable.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return Motion(resize_flow(flow, h, w, cv2.INTER_LINEAR), mask)


@dataclass
class ShotTracker:
    """Follows a clip's input frames (feed them in order): per frame, its `Motion` from the previous one,
    or None where it starts a new shot (the first frame; a frame of another size; fewer than SHOT_CUT of
    its pixels found in the previous frame within PHOTOMETRIC_TOLERANCE). Two DIS flows per frame (`preset`:
    a `PRESETS` value), to the previous frame and back, for the occlusion check of Ruder et al. and Lai et
    al., found side by side in two threads (one DIS flow keeps two cores only partly busy) on the frames
    downscaled by `scale` and brought back to full size. The default, the medium preset at full size,
    blends best; the cheaper settings trade blending quality for time
    (benchmarks/bench_video.py --flow-settings compares them)."""

    preset: int = cv2.DISOpticalFlow_PRESET_MEDIUM
    scale: int = 1
    _flow: Flow = field(init=False, repr=False)
    _back: Flow = field(init=False, repr=False)
    _pool: ThreadPoolExecutor = field(init=False, repr=False)
    _prev_grey: np.ndarray | None = field(default=None, init=False, repr=False)
    _size: tuple[int, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS.values():
            raise ValueError(f"DIS preset {self.preset} is not one of {PRESETS}")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale {self.scale!r}: expected a whole number >= 1 (1 = flow at full size)")
        self._flow, self._back = Flow(self.preset), Flow(self.preset)  # one DIS instance per thread
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="flow-back")

    def __call__(self, frame: np.ndarray) -> Motion | None:
        size = frame.shape[:2]
        g = grey(downscale(np.ascontiguousarray(frame), self.scale))
        motion = None
        if self._prev_grey is not None and self._size == size:
            back = self._pool.submit(self._back, self._prev_grey, g)
            flow = self._flow(g, self._prev_grey)
            backward = back.result()
            same = cv2.absdiff(warp(self._prev_grey, flow), g) < 255 * PHOTOMETRIC_TOLERANCE
            if same.mean() >= SHOT_CUT:
                motion = upscale_motion(flow, consistent(flow, backward), *size)
        self._prev_grey, self._size = g, size
        return motion


def tracked(frames: Iterable[T], track: Callable[[T], Motion | None]) -> Iterator[tuple[T, Motion | None]]:
    """Each of `frames` with its motion `track(frame)` (a `ShotTracker` fed in order), the next frame's
    motion found in a worker thread while the caller works on this one: OpenCV's flow releases the GIL, so
    it overlaps the network's inference instead of adding to it."""
    with ThreadPoolExecutor(1, thread_name_prefix="flow") as pool:
        pending: tuple[T, Future[Motion | None]] | None = None
        for frame in frames:
            ahead = frame, pool.submit(track, frame)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = ahead
        if pending is not None:
            yield pending[0], pending[1].result()


def motion_at(motion: Motion, h: int, w: int) -> Motion:
    """`motion` brought down to a coarser h x w grid (a network's feature map): the flow area-averaged and its
    vectors shrunk by the same ratios; `reliable` becomes each cell's reliable share (float32 in [0, 1]), so
    a cell with some occluded pixels keeps a proportionally smaller share of the past."""
    if motion.flow.shape[:2] == (h, w):
        return motion
    share = cv2.resize(motion.reliable.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return Motion(resize_flow(motion.flow, h, w, cv2.INTER_AREA), share)


def blend_previous_features(own: torch.Tensor, previous: torch.Tensor | None, motion: Motion | None,
                            weight: float) -> torch.Tensor:
    """`blend_previous` for a feature map [1, C, h, w] on any device, with `motion` at its size (`motion_at`):
    `weight` x the previous map warped along the flow (bilinear, edges replicated) + (1 - weight) x its own,
    in proportion to each cell's reliable share."""
    if motion is None or previous is None or weight == 0 or previous.shape != own.shape:
        return own
    h, w = own.shape[-2:]
    coords = torch.from_numpy(pixel_grid(h, w) + motion.flow).to(own.device)
    grid = coords * torch.tensor([2 / max(w - 1, 1), 2 / max(h - 1, 1)], device=own.device) - 1
    warped = F.grid_sample(previous.float(), grid[None], mode="bilinear", padding_mode="border", align_corners=True)
    share = torch.from_numpy(np.asarray(motion.reliable, dtype=np.float32) * np.float32(weight)).to(own.device)
    return torch.lerp(own.float(), warped, share).to(own.dtype)


def blend_previous(output: np.ndarray, previous: np.ndarray | None, motion: Motion | None,
                   weight: float) -> np.ndarray:
    """Flow-guided blending: where `motion` is reliable, `weight` x the previous output warped onto this
    frame + (1 - weight) x this frame's own `output`; elsewhere (occlusions, a new shot) the frame's own.
    [H, W, C] float32. The warp is bicubic: the blend warps its own result again at every frame, and
    bilinear sampling would blur the strokes a little more each time."""
    out = as_float(output)
    if motion is None or previous is None or weight == 0 or previous.shape != out.shape:
        return out
    mixed = warp(as_float(previous), motion.flow, cv2.INTER_CUBIC)
    mixed -= out
    mixed *= (motion.reliable * np.float32(weight))[..., None]
    mixed += out
    return mixed
