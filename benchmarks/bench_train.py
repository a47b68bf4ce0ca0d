"""AdaIN training-step speed: a naive baseline against the project's step variants, in the same run.

Baseline: eager fp32 (TF32 matmuls/convs on CUDA), plain Adam, the loss read back to the host every
step (`loss.item()`), as the popular PyTorch port does. Variants: the project's step (train/loop.py
`make_step`: no host sync per step) with bf16 autocast, channels_last, fused Adam and torch.compile
modes switched on one by one. Prints it/s, pairs/s, achieved TFLOP/s (FLOPs counted on the real step),
peak GPU memory per image, optionally the largest batch that fits, and the end-to-end rate of the real
training loop (`fit`, shard loader, checkpoints) against the GPU-only rate.

    python benchmarks/bench_train.py                       # CPU: baseline vs project at 4 x 64x64
    python benchmarks/bench_train.py --stage train_adain --variants baseline bf16   # the pipeline's step
    python benchmarks/bench_train.py --encoder vgg19 --batch 8 --crop 256 --steps 50 \\
        --variants baseline bf16 compile compile-cl autotune --max-batch --end-to-end 16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from stylepipe.adain.model import Decoder
from stylepipe.adain.train import AdainTask, ReconTask
from stylepipe.core.config import Common, Params, TrainAdain, load_params
from stylepipe.core.paths import ENCODER
from stylepipe.core.runtime import Runtime, resolve_runtime
from stylepipe.nn.encoders import build_encoder, load_encoder
from stylepipe.train.loop import make_step

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
STAGES = ("train_recon", "train_adain")
H100_BF16_PEAK_TFLOPS = 989.0

# name -> (bf16, channels_last, compile mode or None)
VARIANTS: dict[str, tuple[bool, bool, str | None]] = {
    "bf16": (True, False, None),
    "bf16-cl": (True, True, None),
    "compile": (True, False, "default"),
    "compile-cl": (True, True, "default"),
    "autotune": (True, False, "max-autotune-no-cudagraphs"),
    "autotune-cl": (True, True, "max-autotune-no-cudagraphs"),
    "cudagraphs": (True, False, "max-autotune"),
    "cudagraphs-cl": (True, True, "max-autotune"),
}


Task = AdainTask | ReconTask
TaskBuilder = Callable[[Runtime], Task]


def make_task(rt: Runtime, encoder: str) -> AdainTask:
    """AdaIN task on `encoder` (random weights: speed does not depend on them) or the pipeline's file."""
    enc = load_encoder(ENCODER) if encoder == "file" else build_encoder(encoder)
    return AdainTask(rt.prepare(enc), rt.prepare(Decoder(enc.spec.name)), 1.0, 1.0, LAYERS)


def stage_task(rt: Runtime, stage: str, params: Params) -> Task:
    """The training step a pipeline stage runs with `params`: its encoder (the pipeline's file, else the
    configured encoder with random weights) cut at adain.layer, the decoder of adain.layer and
    decoder_width, and train_adain's loss terms or train_recon's reconstruction."""
    layer, width = params.adain.layer, params.adain.decoder_width
    enc = load_encoder(ENCODER, last=layer) if ENCODER.is_file() else build_encoder(params.weights.encoder, layer)
    decoder = rt.prepare(Decoder(enc.spec.name, layer, width))
    if stage == "train_adain":
        return AdainTask.from_params(rt.prepare(enc), decoder, params.train_adain)
    return ReconTask(rt.prepare(enc), decoder)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_step(rt: Runtime, task: Task) -> Callable[..., float]:
    opt = torch.optim.Adam(task.decoder.parameters(), lr=1e-4)

    def step(c: torch.Tensor, s: torch.Tensor) -> float:
        opt.zero_grad()
        loss = task.losses(c, s)["loss"]
        loss.backward()
        opt.step()
        return loss.item()

    return step


def project_step(rt: Runtime, task: Task) -> Callable[..., dict]:
    opt = torch.optim.Adam(task.decoder.parameters(), lr=1e-4, fused=rt.device.type == "cuda")
    step = make_step(task, rt)
    return lambda c, s: step(c, s, opt)


def runtime_for(base: Runtime, variant: str) -> Runtime:
    if variant == "baseline":
        return replace(base, bf16=False, channels_last=False, compile=False)
    if variant == "project":
        return base
    bf16, cl, mode = VARIANTS[variant]
    return replace(base, bf16=bf16, channels_last=cl, compile=mode is not None, compile_mode=mode or "default")


def time_variant(base: Runtime, variant: str, build: TaskBuilder, batch: int, crop: int, steps: int) -> dict:
    """it/s and peak memory of one variant (after warm-up, which includes compilation)."""
    torch._dynamo.reset()
    rt = runtime_for(base, variant)
    task = build(rt)
    step = naive_step(rt, task) if variant == "baseline" else project_step(rt, task)
    c, s = rt.to_device(torch.rand(batch, 3, crop, crop)), rt.to_device(torch.rand(batch, 3, crop, crop))
    t_compile = time.perf_counter()
    for _ in range(3):
        step(c, s)
    sync(rt.device)
    t_compile = time.perf_counter() - t_compile
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(c, s)
    sync(rt.device)
    rate = steps / (time.perf_counter() - t0)
    if isinstance(out, dict):
        float(out["loss"])
    peak = torch.cuda.max_memory_allocated() / batch / 2**20 if rt.device.type == "cuda" else float("nan")
    return {"rate": rate, "peak_mib_per_image": peak, "warmup_s": t_compile}


def profile_variant(base: Runtime, variant: str, build: TaskBuilder, batch: int, crop: int) -> None:
    """Where the GPU time of a step goes: the top kernels over 5 steps."""
    from torch.profiler import ProfilerActivity, profile

    torch._dynamo.reset()
    rt = runtime_for(base, variant)
    task = build(rt)
    step = project_step(rt, task)
    c, s = rt.to_device(torch.rand(batch, 3, crop, crop)), rt.to_device(torch.rand(batch, 3, crop, crop))
    for _ in range(3):
        step(c, s)
    sync(rt.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step(c, s)
        sync(rt.device)
    print(f"profile of {variant} (5 steps):")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90))


def count_flops(base: Runtime, build: TaskBuilder, batch: int, crop: int) -> float:
    """FLOPs of one training step (forward + backward), counted by PyTorch on the eager step."""
    from torch.utils.flop_counter import FlopCounterMode

    rt = runtime_for(base, "baseline")
    task = build(rt)
    c, s = rt.to_device(torch.rand(batch, 3, crop, crop)), rt.to_device(torch.rand(batch, 3, crop, crop))
    with FlopCounterMode(display=False) as counter:
        task.losses(c, s)["loss"].backward()
    return float(counter.get_total_flops())


def largest_batch(base: Runtime, build: TaskBuilder, crop: int, limit: int = 4096) -> int:
    """Largest batch whose eager bf16 step runs: fits in GPU memory and in 32-bit index math (PyTorch's
    reflection-pad kernels index tensors with int32, which caps the batch before memory does at 512)."""
    rt = runtime_for(base, "bf16")
    task = build(rt)
    step = project_step(rt, task)

    def fits(b: int) -> bool:
        try:
            c = rt.to_device(torch.rand(b, 3, crop, crop))
            step(c, c.clone())
            sync(rt.device)
            return True
        except torch.OutOfMemoryError:
            return False
        except RuntimeError as err:
            if "32-bit index" not in str(err):
                raise
            return False
        finally:
            torch.cuda.empty_cache()

    lo, hi = 0, 1
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def write_synthetic_shards(root: Path, n: int, short_side: int = 512) -> Path:
    """Shard stores of n generated photos (short side 512, JPEG q90) per side, like `preprocess` writes."""
    import io

    import numpy as np
    from PIL import Image

    from stylepipe.data.shards import ShardWriter

    rng = np.random.default_rng(0)
    for side, label in (("content", None), ("style", "synthetic")):
        with ShardWriter(root / side, shard_max_bytes=256 * 2**20) as writer:
            for k in range(n):
                w = int(short_side * rng.uniform(1.2, 1.6))
                base = rng.integers(0, 255, (short_side // 16, w // 16, 3), dtype=np.uint8)
                img = Image.fromarray(base).resize((w, short_side), Image.Resampling.BICUBIC)
                noise = rng.normal(0, 12, (short_side, w, 3))
                img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=90)
                writer.add(buf.getvalue(), id=f"{side}{k}", source="synthetic", split="train", label=label,
                           width=w, height=short_side)
    return root


def end_to_end(base: Runtime, build: TaskBuilder, batch: int, crop: int, steps: int, workers: int,
               prepared: Path | None, decode_on: str = "workers") -> float:
    """it/s of the real loop (`fit`: loader, steps, checkpoint) on shards, after a warm-up run."""
    from stylepipe.train.loop import fit
    from stylepipe.train.plumbing import chunk_loader, open_stores

    torch._dynamo.reset()
    with tempfile.TemporaryDirectory() as tmp:
        data = prepared or write_synthetic_shards(Path(tmp) / "prepared", 256)
        stores = open_stores(data)
        rates = []
        for run, iters in (("warm", 10), ("timed", steps)):
            cfg = TrainAdain(iterations=iters, batch_size=batch, crop=crop, lr=1e-4, checkpoint_every=iters,
                             log_every=max(1, iters // 5), image_every=10**9, num_workers=workers,
                             decode_on=decode_on)
            task = build(base)
            loader = chunk_loader(stores, cfg, seed=0, device=base.device)
            result = fit(task, cfg, base, loader, Path(tmp) / f"ckpt-{run}", run)
            rates.append(iters / result.seconds)
    return rates[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="file", help="file (the pipeline's encoder) | vgg16_hed | vgg19 | vgg19_bn")
    ap.add_argument("--stage", choices=STAGES, default=None,
                    help="time that stage's step as params.yaml configures it (losses, layer, width; its batch "
                         "and crop unless given) instead of the plain AdaIN step of --encoder")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="with --stage: the parameters file")
    ap.add_argument("--batch", type=int, default=None, help="default: the stage's batch_size, else 4")
    ap.add_argument("--crop", type=int, default=None, help="default: the stage's crop, else 64")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--variants", nargs="*", default=["baseline", "project"],
                    help=f"baseline, project (params' auto switches), {', '.join(VARIANTS)}")
    ap.add_argument("--max-batch", action="store_true", help="search the largest batch at 256 and 512 (CUDA)")
    ap.add_argument("--end-to-end", type=int, metavar="WORKERS", default=None,
                    help="also time the real loop with this many loader workers")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of the fastest variant")
    ap.add_argument("--decode-on", choices=("workers", "device"), default="workers",
                    help="end to end: JPEG decoding in the loader workers (PIL) or batched on the device (nvJPEG)")
    ap.add_argument("--data", type=Path, default=None, help="prepared shards (default: generated ones)")
    args = ap.parse_args()
    encoder = "vgg16_hed" if args.encoder == "file" and not ENCODER.is_file() else args.encoder
    build: TaskBuilder = partial(make_task, encoder=encoder)
    what = f"encoder {encoder}"
    if args.stage is not None:
        params = load_params(args.params)
        stage_cfg = getattr(params, args.stage)
        args.batch, args.crop = args.batch or stage_cfg.batch_size, args.crop or stage_cfg.crop
        build, what = partial(stage_task, stage=args.stage, params=params), f"{args.stage}'s step ({args.params})"
    args.batch, args.crop = args.batch or 4, args.crop or 64
    base = resolve_runtime(Common())
    cuda = base.device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores"
    flops = count_flops(base, build, args.batch, args.crop)
    print(f"device: {name}; torch {torch.__version__}; {what}; batch {args.batch} of "
          f"{args.crop}x{args.crop}; {flops / 1e12:.3f} TFLOP per step")
    results = {}
    for variant in args.variants:
        results[variant] = r = time_variant(base, variant, build, args.batch, args.crop, args.steps)
        ratio = r["rate"] / results[args.variants[0]]["rate"]
        tflops = r["rate"] * flops / 1e12
        peak = f"  {r['peak_mib_per_image']:7.1f} MiB/image" if cuda else ""
        mfu = f" ({100 * tflops / H100_BF16_PEAK_TFLOPS:4.1f}% of bf16 peak)" if cuda else ""
        print(f"{variant:14s}: {r['rate']:8.2f} it/s {r['rate'] * args.batch:8.1f} pairs/s  {ratio:5.2f}x  "
              f"{tflops:7.1f} TFLOP/s{mfu}{peak}  warm-up {r['warmup_s']:.0f} s", flush=True)
    if args.profile and cuda:
        profile_variant(base, max(results, key=lambda v: results[v]["rate"]), build, args.batch, args.crop)
    if args.max_batch and cuda:
        for crop in (256, 512):
            print(f"largest batch (eager bf16) at {crop}x{crop}: {largest_batch(base, build, crop)}", flush=True)
    if args.end_to_end is not None:
        best = max(results, key=lambda v: results[v]["rate"])
        rt = runtime_for(base, best)
        rate = end_to_end(rt, build, args.batch, args.crop, args.steps, args.end_to_end, args.data,
                          args.decode_on)
        print(f"end to end ({best}, fit() + shard loader, {args.end_to_end} workers, decoding on "
              f"{args.decode_on}): {rate:8.2f} it/s = "
              f"{100 * rate / results[best]['rate']:.0f}% of the GPU-only rate")


if __name__ == "__main__":
    main()
