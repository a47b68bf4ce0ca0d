"""Preprocess speed (images/s) on realistic COCO-like and WikiArt-like JPEGs, per core and on all the
given worker counts, with the projected time for the full ~205k-image set (archive extraction excluded).

    python benchmarks/bench_preprocess.py [--coco 120] [--wikiart 80] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from PIL import JpegImagePlugin
from realistic import FULL_COCO, FULL_WIKIART, describe, make_raw

from stylepipe.core.config import Preprocess
from stylepipe.data.preprocess import convert_image, run_preprocess
from tests.data_fixtures import make_params


def per_core_rate(files: list[Path], short_side: int) -> float:
    t0 = time.perf_counter()
    for f in files:
        convert_image(str(f), short_side, 64)
    return len(files) / (time.perf_counter() - t0)


def without_draft(files: list[Path], short_side: int) -> float:
    """The same conversion with JPEG draft mode (DCT-domain downscaling) switched off."""
    draft = JpegImagePlugin.JpegImageFile.draft
    JpegImagePlugin.JpegImageFile.draft = lambda self, mode, size: None  # type: ignore[method-assign]
    try:
        return per_core_rate(files, short_side)
    finally:
        JpegImagePlugin.JpegImageFile.draft = draft  # type: ignore[method-assign]


def stage_rate(raw: Path, workers: int, short_side: int) -> tuple[float, int]:
    params = make_params(preprocess=Preprocess(short_side=short_side, workers=workers))
    with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:
        t0 = time.perf_counter()
        report = run_preprocess(params, raw, Path(tmp) / "prepared", Path(tmp) / "extract", progress=False)
        seconds = time.perf_counter() - t0
    n = sum(report[d]["train"] + report[d]["val"] + report[d]["rejected"] for d in ("content", "style"))
    return n / seconds, n


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coco", type=int, default=120, help="COCO-like images (full-set ratio: 60%%)")
    ap.add_argument("--wikiart", type=int, default=80, help="WikiArt-like images (full-set ratio: 40%%)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--short-side", type=int, default=512)
    args = ap.parse_args()
    raw = make_raw(args.coco, args.wikiart)
    print(f"{os.cpu_count()} CPU cores; {describe(raw)}; shorter side -> {args.short_side}")
    coco = sorted((raw / "coco" / "images").glob("*.jpg"))
    wiki = sorted((raw / "wikiart").rglob("*.jpg"))
    r_coco, r_wiki = per_core_rate(coco, args.short_side), per_core_rate(wiki, args.short_side)
    r_wiki_nodraft = without_draft(wiki, args.short_side)
    print(f"one core, decode+validate+resize+encode: COCO-like {r_coco:6.1f} img/s, WikiArt-like "
          f"{r_wiki:6.1f} img/s (without JPEG draft mode: {r_wiki_nodraft:5.1f} img/s, "
          f"draft is {r_wiki / r_wiki_nodraft:.1f}x)")
    core_s = FULL_COCO / r_coco + FULL_WIKIART / r_wiki  # core-seconds for the full set
    rates = {}
    for w in args.workers:
        rates[w], n = stage_rate(raw, w, args.short_side)
        print(f"preprocess stage, {w} worker(s): {rates[w]:6.1f} img/s ({rates[w] / w:5.1f} per worker) "
              f"on {n} images")
    base = rates.get(1)
    for w in args.workers:
        if w > 1 and base:
            print(f"  scaling 1 -> {w} workers: {rates[w] / base / w:.0%} of linear")
    full = FULL_COCO + FULL_WIKIART
    best_w = max(rates, key=lambda w: rates[w])
    print(f"full set ({full:,} images), measured stage rate with {best_w} worker(s): "
          f"{hours(full / rates[best_w])}")
    for cores in (2, 16):
        print(f"full set on {cores:2d} cores, linear scaling of the per-core rates: {hours(core_s / cores)}")


if __name__ == "__main__":
    main()
