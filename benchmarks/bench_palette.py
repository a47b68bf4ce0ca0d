"""Cost of the finishing steps per frame (`adain.detail`, `adain.palette: histogram`), against the
network's own frame time.

Baseline: the default AdaIN network (relu3_1 of vgg16_hed, half-width decoder, style statistics cached)
on one frame, eager fp32, without the finishing steps. Measured in the same run: `restore_fine_detail` of
that frame's output (inside the exported graphs, so on the device for the OAK), and `match_palette` of it
to a palette, which the host adds to every frame (stylize, serving, the host and OAK demos) when the model
matches palettes: as `match_palette` does it (from SORTED values per channel, quantiles from a histogram and
the map through a table) and, as the baseline, exactly (a sort for the quantiles, a binary search per
value), with the largest difference between the two. Untrained weights: the compute is the same as a
trained model's.

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
from stylepipe.nn.palette import QUANTILES, _interp, _quantiles, match_palette, palette_of


def seconds_per_call(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def match_exactly(image: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """`match_palette` by sorting and searching: the baseline of its tables."""
    flat = image.reshape(3, -1)
    return _interp(flat, _quantiles(flat, QUANTILES), palette[0]).reshape(image.shape)


@torch.no_grad()
def frame_costs(model: AdaINStylizer, size: int, repeats: int) -> tuple[float, float, float, float, float]:
    """Seconds per frame of the network, of restoring the content's fine detail on its output, of matching
    that to a palette and of matching it exactly, at `size` px; and the largest difference of the two
    matches."""
    frame, style = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    mean, std = model.style_stats(style)
    palette = palette_of(style[0])[None]
    out = restore_fine_detail(model(frame, mean, std), frame, 1.0).clamp(0, 1)
    difference = float((match_palette(out, palette) - match_exactly(out, palette)).abs().max())
    return (seconds_per_call(lambda: model(frame, mean, std), repeats),
            seconds_per_call(lambda: restore_fine_detail(out, frame, 1.0), repeats),
            seconds_per_call(lambda: match_palette(out, palette), repeats),
            seconds_per_call(lambda: match_exactly(out, palette), repeats), difference)


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
    print(f"{'size':>6}{'network ms':>12}{'detail ms':>11}{'palette ms':>12}{'exact ms':>10}{'detail / network':>18}"
          f"{'palette / network':>19}{'exact / network':>17}{'max difference':>16}")
    for size in args.sizes:
        network, detail, matching, exact, difference = frame_costs(model, size, args.repeats)
        print(f"{size:>6}{network * 1e3:>12.1f}{detail * 1e3:>11.1f}{matching * 1e3:>12.1f}{exact * 1e3:>10.1f}"
              f"{detail / network:>17.1%}{matching / network:>18.1%}{exact / network:>16.1%}{difference:>16.5f}")

if __name__ == "__main__":
    main()
