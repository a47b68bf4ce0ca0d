"""AdaIN training-step speed: a naive baseline against the project's loop, measured in the same run.

Baseline: eager fp32, plain Adam, the loss read back to the host every step (`loss.item()`), as the
popular port does. Project: the shared loop's step (no host sync per step; on CUDA also bf16 autocast,
channels_last, torch.compile and fused Adam as params.yaml's `auto` switches choose). Also the data
loader's throughput in pairs/s from data/prepared (when a `dvc repro` has produced it).

    python benchmarks/bench_train.py [--batch 4] [--crop 64] [--steps 10] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from stylepipe.config import Common
from stylepipe.models.adain import Decoder
from stylepipe.models.encoders import build_encoder, load_encoder
from stylepipe.paths import ENCODER
from stylepipe.runtime import Runtime, resolve_runtime
from stylepipe.train.loop import make_step
from stylepipe.train.stages import AdainTask

# one AdaIN step = encoder(content) + encoder(style) + decoder fwd/bwd + encoder(output) fwd/bwd
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def make_task(rt: Runtime) -> AdainTask:
    enc_path = ENCODER
    enc = load_encoder(enc_path) if enc_path.is_file() else build_encoder("vgg16_hed")
    return AdainTask(rt.prepare(enc), rt.prepare(Decoder(enc.spec.name)), 1.0, 1.0, LAYERS)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_baseline(rt: Runtime, batch: int, crop: int, steps: int) -> float:
    task = make_task(Runtime(rt.device, bf16=False, channels_last=False, compile=False))
    opt = torch.optim.Adam(task.decoder.parameters(), lr=1e-4)
    c = torch.rand(batch, 3, crop, crop, device=rt.device)
    s = torch.rand(batch, 3, crop, crop, device=rt.device)

    def step() -> float:
        opt.zero_grad()
        loss = task.losses(c, s)["loss"]
        loss.backward()
        opt.step()
        return loss.item()

    step()
    sync(rt.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(rt.device)
    return steps / (time.perf_counter() - t0)


def bench_project(rt: Runtime, batch: int, crop: int, steps: int) -> float:
    task = make_task(rt)
    opt = torch.optim.Adam(task.decoder.parameters(), lr=1e-4, fused=rt.device.type == "cuda")
    step = make_step(task, rt)
    c = rt.to_device(torch.rand(batch, 3, crop, crop))
    s = rt.to_device(torch.rand(batch, 3, crop, crop))
    for _ in range(3 if rt.compile else 1):  # compile / autotune warm-up
        step(c, s, opt)
    sync(rt.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        terms = step(c, s, opt)
    sync(rt.device)
    float(terms["loss"])
    return steps / (time.perf_counter() - t0)


def bench_loader(batch: int, crop: int, workers: int, batches: int) -> float | None:
    from torch.utils.data import DataLoader

    from stylepipe.data.datasets import RandomPairs
    from stylepipe.paths import PREPARED
    from stylepipe.train.stages import open_stores

    if not (PREPARED / "content").is_dir():
        return None
    ds = RandomPairs(*open_stores(), crop=crop, split="train", seed=0, length=batch * batches)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers)
    t0 = time.perf_counter()
    n = sum(c.shape[0] for c, _ in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    args = ap.parse_args()
    rt = resolve_runtime(Common())
    name = torch.cuda.get_device_name() if rt.device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch} of {args.crop}x{args.crop}; "
          f"project switches: bf16={rt.bf16} channels_last={rt.channels_last} compile={rt.compile}")
    # alternate and keep the best of two rounds, so warm-up and noise do not favour either side
    base = ours = 0.0
    for _ in range(2):
        base = max(base, bench_baseline(rt, args.batch, args.crop, args.steps))
        ours = max(ours, bench_project(rt, args.batch, args.crop, args.steps))
    print(f"baseline (eager fp32, .item() every step): {base:8.2f} it/s  {base * args.batch:8.1f} pairs/s")
    print(f"project loop step                         : {ours:8.2f} it/s  {ours * args.batch:8.1f} pairs/s"
          f"  ({ours / base:.2f}x)")
    for w in args.workers:
        rate = bench_loader(args.batch, args.crop, w, batches=max(8, args.steps))
        if rate is None:
            print("loader: data/prepared missing (run `dvc repro preprocess`)")
            break
        print(f"loader, {w} worker(s)                      : {rate:8.1f} pairs/s"
              f"  ({rate / (ours * args.batch):.1f}x what the step consumes)")


if __name__ == "__main__":
    main()
