"""Cost of the finishing steps per frame (`adain.detail`, `adain.palette: histogram`), against the
network's own frame time.

Baseline: the default AdaIN network (relu3_1 of vgg16_hed, half-width decoder, style statistics cached)
on one frame, eager fp32, without the finishing steps. Measured in the same run: `restore_fine_detail` of
that frame's output (inside the exported graphs, so on the device for the OAK), and `match_palette` of it
to a palette, which the host adds to every frame (stylize, serving, the host and OAK demos) when the model
matches palettes. Untrained weights: the compute is the same as a trained model's.

    python benchmarks/bench_palette.py                      # 256 and 512 px, the CPU's threads
    python benchmarks/bench_palette.py --sizes 256 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from stylepipe.adain.model import AdaINStylizer, Decoder
from stylepipe.nn.detail import restore_fine_detail
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.palette import match_palette, palette_of


def seconds_per_call(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def frame_costs(model: AdaINStylizer, size: int, repeats: int) -> tuple[float, float, float]:
    """Seconds per frame of the network, of restoring the content's fine detail on its output and of
    matching that to a palette, at `size` px."""
    frame, style = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    mean, std = model.style_stats(style)
    palette = palette_of(style[0])[None]
    out = model(frame, mean, std)
    return (seconds_per_call(lambda: model(frame, mean, std), repeats),
            seconds_per_call(lambda: restore_fine_detail(out, frame, 1.0), repeats),
            seconds_per_call(lambda: match_palette(out, palette), repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'size':>6}{'network ms':>12}{'detail ms':>11}{'palette ms':>12}{'detail / network':>18}"
          f"{'palette / network':>19}")
    for size in args.sizes:
        network, detail, matching = frame_costs(model, size, args.repeats)
        print(f"{size:>6}{network * 1e3:>12.1f}{detail * 1e3:>11.1f}{matching * 1e3:>12.1f}"
              f"{detail / network:>17.1%}{matching / network:>18.1%}")

if __name__ == "__main__":
    main()
