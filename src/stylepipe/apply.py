"""Any stylizer over images, folders and videos: the model-agnostic I/O behind `stylepipe stylize`.

A stylizer is any callable taking a [1, 3, H, W] float tensor in [0, 1] (H, W multiples of 8) and returning
one of the same size. `run_stylizer` handles images (any mode, any size: reflect-padded to multiples of 8
and cropped back), folders (bad files are skipped and reported), videos (PyAV, audio copied),
`content_size` and progress bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from stylepipe.core.errors import InputError
from stylepipe.core.io import atomic_path
from stylepipe.core.media import (
    MediaError,
    VideoWriter,
    is_video,
    iter_video_frames,
    list_images,
    open_image,
    probe_video,
)
from stylepipe.core.tiling import pad_to_grid
from stylepipe.core.viz import to_pil
from stylepipe.data.datasets import image_to_tensor, resize_short, short_side_size
from stylepipe.nn.temporal import Motion, ShotTracker, blend_previous, tracked

Stylizer = Callable[[torch.Tensor], torch.Tensor]
# the previous output's share in each frame of a video by default, for any stylizer: chosen by
# benchmarks/bench_video.py (docs/video.md)
FLOW_BLEND = 0.7
MIN_SIDE = 16  # at the deepest AdaIN layer (relu4_1, 1/8 scale) the map must be 2x2 for reflection padding


class StylizeError(InputError):
    """An input cannot be used or an option is out of range; the message names the file or the value.

    `options` names the arguments at fault as the Python API spells them (`alpha`, `style_stats`): a front
    end adds its own spelling of them (the CLI's `--alpha`), the message itself names no front end's.
    """

    def __init__(self, message: str, options: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.options = options


def read_image(path: Path, size: int = 0, upscale: bool = False) -> torch.Tensor:
    """RGB tensor [3, H, W] in [0, 1]; `size` > 0 resizes the shorter side (down only unless `upscale`)."""
    try:
        img = open_image(path)
    except MediaError as err:
        raise StylizeError(str(err)) from None
    img = _resize(img, size, upscale)
    if min(img.size) < MIN_SIDE:
        raise StylizeError(f"{path}: image {img.size[0]}x{img.size[1]} is too small (need at least {MIN_SIDE} px)")
    return image_to_tensor(img)


def _resize(img: Image.Image, size: int, upscale: bool = False) -> Image.Image:
    if size and (upscale or min(img.size) > size):
        return resize_short(img, size) if upscale else img.resize(short_side_size(*img.size, size),
                                                                  Image.Resampling.LANCZOS)
    return img


def apply_padded(stylizer: Stylizer, image: torch.Tensor) -> torch.Tensor:
    """Run a stylizer on a [3, H, W] image of any size: pad to the grid, stylise, crop back."""
    padded, (h, w) = pad_to_grid(image[None])
    return stylizer(padded)[0, :, :h, :w]


def save_image(img: torch.Tensor, path: Path) -> None:
    """Atomically write a [3, H, W] tensor; the format follows the suffix (.png, .jpg, .webp, ...)."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise StylizeError(f"{path}: unknown image suffix {path.suffix!r} (use .png or .jpg)")
    with atomic_path(path) as tmp:
        to_pil(img).save(tmp, format=fmt)


def _output_for(content: Path, output: Path, suffix: str = ".png") -> Path:
    if output.is_dir() or output.suffix == "":
        return output / f"{content.stem}_stylized{suffix}"
    return output


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def _refuse_overwriting(sources: Sequence[Path], targets: Sequence[Path]) -> None:
    """No output may land on an input: the original would be replaced by its stylised copy."""
    for target in targets:
        hit = next((s for s in sources if _same_file(s, target)), None)
        if hit is not None:
            raise StylizeError(f"{target}: the output would overwrite the input {hit}; choose another -o")


def folder_targets(images: Sequence[Path], output: Path) -> dict[Path, Path]:
    """Output file per input image: <stem>_stylized.png, or <stem>_<ext>_stylized.png for inputs whose
    stems collide (a.jpg and a.png), so that no two inputs write the same file."""
    stems: dict[str, int] = {}
    for path in images:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    targets = {path: output / (f"{path.stem}_stylized.png" if stems[path.stem] == 1
                               else f"{path.stem}_{path.suffix.lstrip('.').lower()}_stylized.png") for path in images}
    by_target: dict[Path, list[str]] = {}
    for path, target in targets.items():
        by_target.setdefault(target, []).append(path.name)
    clashes = {target.name: names for target, names in by_target.items() if len(names) > 1}
    if clashes:
        raise StylizeError(f"{output}: several inputs would write the same output {clashes}; rename them")
    return targets


def _fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Shrink [3, H, W] so the shorter side is `size` (never upscale; 0 = keep)."""
    h, w = image.shape[-2:]
    if not size or min(h, w) <= size:
        return image
    nw, nh = short_side_size(w, h, size)
    return F.interpolate(image[None], size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def _stylise_image(stylizer: Stylizer, source: Path, target: Path, size: int) -> str:
    image = read_image(source, size)
    save_image(apply_padded(stylizer, image), target)
    return str(target)


def runs_off_the_cpu(stylizer: Stylizer) -> bool:
    """Whether `stylizer` says (by a `device` attribute) that it runs on another device than the CPU, which
    leaves the CPU's cores free for the optical flow meanwhile."""
    device = getattr(stylizer, "device", None)
    return device is not None and torch.device(device).type != "cpu"


def stylise_frames(stylizer: Stylizer, frames: Iterable[torch.Tensor], flow_blend: float = 0.0,
                   flow_ahead: bool | None = None) -> Iterator[torch.Tensor]:
    """A video's frames ([3, H, W] in [0, 1], in order) through `stylizer`. A stylizer with a `follow(motion)`
    method (state carried across frames, e.g. `adain.video.StableAdaIN`) is told each frame's `Motion` from
    the previous one before it runs, None where a shot starts; `flow_blend` > 0 blends each output with the
    previous one along the input's optical flow (`nn.temporal.blend_previous`). With `flow_ahead` the flow
    of the next frame is found while the stylizer runs this one (`nn.temporal.tracked`); by default only
    for a stylizer that `runs_off_the_cpu`, since a network on the CPU keeps every core busy and the two
    would only contend for them."""
    follow = getattr(stylizer, "follow", None)
    if flow_blend or follow is not None:
        tracker = ShotTracker()

        def track(image: torch.Tensor) -> Motion | None:
            return tracker(image.permute(1, 2, 0).numpy())

        ahead = runs_off_the_cpu(stylizer) if flow_ahead is None else flow_ahead
        motions = tracked(frames, track) if ahead else ((image, track(image)) for image in frames)
    else:
        motions = ((image, None) for image in frames)
    previous = None
    for image, motion in motions:
        if follow is not None:
            follow(motion)
        with torch.no_grad():
            out = apply_padded(stylizer, image).float().cpu()
        if flow_blend:
            previous = blend_previous(out.permute(1, 2, 0).numpy(), previous, motion, flow_blend)
            out = torch.from_numpy(previous).permute(2, 0, 1)
        yield out


def _stylise_video(stylizer: Stylizer, source: Path, target: Path, size: int, progress: bool,
                   flow_blend: float = 0.0) -> dict:
    try:
        info = probe_video(source)
    except MediaError as err:
        raise StylizeError(str(err)) from None
    if target.suffix.lower() != ".mp4":
        raise StylizeError(f"{target}: video output must be an .mp4 file")
    writer = None
    with atomic_path(target) as tmp:
        bar = tqdm(total=info.frames or None, desc=source.name, unit="frame", disable=not progress)
        try:
            frames = (_fit(torch.from_numpy(f).permute(2, 0, 1).float() / 255.0, size)
                      for f in iter_video_frames(source))
            for out in stylise_frames(stylizer, frames, flow_blend):
                out = out[:, : out.shape[1] // 2 * 2, : out.shape[2] // 2 * 2]  # H.264 needs even sizes
                if writer is None:
                    writer = VideoWriter(tmp, info.fps, out.shape[2], out.shape[1],
                                         audio_from=source if info.has_audio else None)
                writer.write(np.asarray(to_pil(out)))
                bar.update()
        except MediaError as err:
            raise StylizeError(str(err)) from None
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if writer is None or writer.frames == 0:
            raise StylizeError(f"{source}: video has no frames")
    return {"output": str(target), "frames": writer.frames, "audio": writer.audio}


def video_flow_blend(content: Path, given: float | None) -> float:
    """The flow blend `stylize` uses: `given`, else FLOW_BLEND for a video and 0 for images and folders,
    where it does not apply."""
    if given is not None:
        return given
    return FLOW_BLEND if is_video(Path(content)) else 0.0


def run_stylizer(content: Path, output: Path, stylizer: Stylizer, content_size: int = 0,
                 progress: bool = True, flow_blend: float = 0.0) -> dict:
    """Stylise an image (output: a file, or a folder), a folder of images (output: a folder; unreadable
    files are skipped and reported; a.jpg and a.png get distinct outputs) or a video (output: an .mp4;
    audio copied; `flow_blend` 0..<1: the share of the previous output, warped along the optical flow, in
    each frame) with any stylizer. An output that would overwrite an input is refused before any work."""
    content, output = Path(content), Path(output)
    if not 0.0 <= flow_blend < 1.0:
        raise StylizeError(f"flow_blend {flow_blend} is out of range: expected 0 <= flow_blend < 1", ("flow_blend",))
    if flow_blend and not is_video(content):
        raise StylizeError(f"{content}: flow_blend ties a video's frames together; it does not apply to images",
                           ("flow_blend",))
    if content.is_dir():
        if output.exists() and not output.is_dir():
            raise StylizeError(f"{output}: a folder input needs an output folder, not a file")
        targets = folder_targets(list_images(content), output)
        _refuse_overwriting(list(targets), list(targets.values()))
        written, skipped = [], {}
        for path, target in tqdm(targets.items(), desc=str(content), unit="image", disable=not progress):
            try:
                written.append(_stylise_image(stylizer, path, target, content_size))
            except StylizeError as err:
                skipped[str(path)] = str(err)
        if not written and skipped:
            raise StylizeError(f"{content}: no image could be stylised: {skipped}")
        return {"written": written, "skipped": skipped}
    if not content.exists():
        raise StylizeError(f"{content}: no such file or folder")
    target = _output_for(content, output, ".mp4" if is_video(content) else ".png")
    _refuse_overwriting([content], [target])
    if is_video(content):
        return {"written": [], "skipped": {}, "video": _stylise_video(stylizer, content, target, content_size,
                                                                       progress, flow_blend)}
    return {"written": [_stylise_image(stylizer, content, target, content_size)], "skipped": {}}
