"""Training-loader throughput (pairs/s): the project's shard loader against a naive baseline, same run.

Baseline (the popular PyTorch port): every sample opens the ORIGINAL JPEG, resizes it to 512x512 and
takes a random 256 crop (torchvision Resize + RandomCrop + ToTensor). Project: RandomPairs over the
prepared shards (JPEGs with the shorter side at 512, crop boxes drawn from the manifest). With
`--device cuda`, also EncodedPairs: workers only slice JPEG bytes, the main process decodes whole batches
with nvJPEG (torchvision.io.decode_jpeg(device="cuda")) and crops on the GPU.

    python benchmarks/bench_loader.py [--workers 2] [--batch 8] [--crop 256] [--batches 40] [--device cpu]

Needs only torch, torchvision, numpy and Pillow once .cache/bench/ holds the generated set (make it on
any machine with the project installed, then copy .cache/bench/ over).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from realistic import CACHE, describe, make_raw
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from stylepipe.data.datasets import EncodedPairs, RandomPairs, decode_batch
from stylepipe.data.shards import ShardStore
from stylepipe.train.plumbing import open_stores

# AdaIN training at the FIELD_NOTES H100 speed: 83.2 it/s x batch 8 (compiled, bf16, fused Adam)
STEP_PAIRS_PER_S = 83.2 * 8


class NaivePairs(Dataset):
    """The popular port's input path: PIL open of the original file, 512x512 resize, random crop."""

    def __init__(self, content: list[Path], style: list[Path], crop: int, length: int) -> None:
        self.content, self.style, self.length = content, style, length
        self.tf = transforms.Compose([transforms.Resize((512, 512)), transforms.RandomCrop(crop),
                                      transforms.ToTensor()])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(i)
        c = Image.open(self.content[int(rng.integers(len(self.content)))]).convert("RGB")
        s = Image.open(self.style[int(rng.integers(len(self.style)))]).convert("RGB")
        return self.tf(c), self.tf(s)


def prepared_stores(raw: Path) -> tuple[ShardStore, ShardStore]:
    out = CACHE / f"prepared-{raw.name}"
    if not (out / "report.json").is_file():
        # only when generating (pydantic, pycocotools): a GPU box can be handed .cache/bench/ ready-made
        from stylepipe.core.config import Preprocess
        from stylepipe.data.preprocess import run_preprocess
        from tests.data_fixtures import make_params

        params = make_params(preprocess=Preprocess(short_side=512, val_fraction=0.01))
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            run_preprocess(params, raw, out, Path(tmp), progress=False)
    return open_stores(out)


def rate(batches: Iterable, n_batches: int, batch: int, device: torch.device,
         decode: Callable | None = None) -> tuple[float, float]:
    """(pairs/s after the first batch, seconds to the first batch: worker start-up)."""
    t0 = time.perf_counter()
    it = iter(batches)
    first = None
    for k in range(n_batches):
        b = next(it)
        c, s = decode(b) if decode else b
        c, s = c.to(device, non_blocking=True), s.to(device, non_blocking=True)
        if k == 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            first = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert first is not None
    return (n_batches - 1) * batch / (time.perf_counter() - first), first - t0


def report(name: str, pairs_s: float, startup: float, workers: int, base: float | None) -> None:
    per = f"{pairs_s / workers:6.1f} per worker" if workers else "   in-process    "
    vs = f"  {pairs_s / base:5.1f}x baseline" if base else ""
    print(f"{name:34s} {pairs_s:7.1f} pairs/s ({per}), start-up {startup:4.1f} s{vs}"
          f"  = {pairs_s / STEP_PAIRS_PER_S:4.2f}x an H100 step's {STEP_PAIRS_PER_S:.0f} pairs/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coco", type=int, default=120)
    ap.add_argument("--wikiart", type=int, default=80)
    ap.add_argument("--workers", type=int, nargs="+", default=[2])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per loader (after the first)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (adds the nvJPEG batch-decode loader)")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    raw = make_raw(args.coco, args.wikiart)
    content, style = prepared_stores(raw)
    print(f"{os.cpu_count()} CPU cores, device {device}; {describe(raw)}; batch {args.batch} x "
          f"{args.crop}x{args.crop} crops; {len(content)} + {len(style)} images in the shards")
    n = args.batches + 1
    length = n * args.batch
    pin = device.type == "cuda"
    c_files = sorted((raw / "coco" / "images").glob("*.jpg"))
    s_files = sorted((raw / "wikiart").rglob("*.jpg"))
    for w in args.workers:
        base = None
        if not args.skip_baseline:
            naive = DataLoader(NaivePairs(c_files, s_files, args.crop, length), batch_size=args.batch,
                               shuffle=True, num_workers=w, pin_memory=pin)
            base, start = rate(naive, n, args.batch, device)
            report(f"baseline (original JPEG), {w} worker(s)", base, start, w, None)
        ds = RandomPairs(content, style, crop=args.crop, split="train", seed=0, length=length)
        loader = DataLoader(ds, batch_size=args.batch, num_workers=w, pin_memory=pin)
        report(f"project shards, {w} worker(s)", *rate(loader, n, args.batch, device), w, base)
        if device.type == "cuda":
            enc = EncodedPairs(content, style, crop=args.crop, split="train", seed=0, length=length)
            loader = DataLoader(enc, batch_size=args.batch, num_workers=w, collate_fn=list)
            got = rate(loader, n, args.batch, device, decode=lambda b: decode_batch(b, device))
            report(f"shards + nvJPEG batch decode, {w} w", *got, w, base)


if __name__ == "__main__":
    main()
