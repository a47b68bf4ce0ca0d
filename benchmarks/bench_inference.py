"""Inference speed of the AdaIN stylizer, naive reference vs the project's fast paths, side by side.

`--device cuda` (the GPU figures): at 512x512 and 1920x1080, one stream, batch 1:
  reference  fp32 eager PyTorch with the style image (512x512) encoded again for every frame (what the
             popular port does; PyTorch's default cuDNN TF32 setting left as is),
  fast paths the engine's torch backend (adain.fast.torch_engine, what `stylepipe stylize` runs): style
             statistics cached, bf16 autocast (AdaIN statistics in fp32), optional channels_last,
             torch.compile, optional CUDA graphs (mode reduce-overhead),
and for each: FPS, the ratio to the reference, and max/mean |fast - fp32 reference| on [0, 1] outputs
with a PASS/FAIL against `--atol`/`--mean-atol`.
`--device cpu`: eager fp32 (style per frame and cached) vs ONNX Runtime and OpenVINO at `--size`.

Uses the trained models of a `dvc repro` when present (models/encoder, models/adain), random weights
otherwise (speed does not depend on the values; the error figures do: use trained models for those).
The CUDA path imports only torch and stylepipe's pure-torch modules (models, tiling).

    python benchmarks/bench_inference.py --device cuda [--variants eager,compile,compile-cl,cudagraphs]
    python benchmarks/bench_inference.py --device cpu [--size 512] [--repeats 5] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import AdaINStylizer, Decoder, load_stylizer
from stylepipe.core.paths import DECODER, ENCODER
from stylepipe.core.runtime import Runtime, calls_per_second
from stylepipe.core.tiling import pad_to_grid
from stylepipe.nn.encoders import build_encoder

GPU_SIZES = ((512, 512), (1080, 1920))
VARIANTS = {  # name: (channels_last, compile, compile mode)
    "eager": (False, False, None),
    "compile": (False, True, None),
    "compile-cl": (True, True, None),
    "cudagraphs": (False, True, "reduce-overhead"),
    "autotune": (False, True, "max-autotune-no-cudagraphs"),
}


FINISH = Finish()  # the default finishing (fine detail restored, palette matched), as the pipeline's


def eager(model: AdaINStylizer, device: torch.device) -> Engine:
    """The reference: the engine on eager float32 PyTorch."""
    return torch_engine(model, Runtime(device, bf16=False, channels_last=False, compile=False), FINISH)


def load_model() -> tuple[AdaINStylizer, str]:
    enc, dec = ENCODER, DECODER
    if enc.is_file() and dec.is_file():
        return load_stylizer(enc, dec), "trained (models/adain)"
    torch.manual_seed(0)
    return AdaINStylizer(build_encoder("vgg16_hed"), Decoder("vgg16_hed")).eval(), "random weights"


def test_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A deterministic photo-like frame: smooth colour fields plus fine texture, [1, 3, h, w] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 9, 16, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.08 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def gpu_rows(model: AdaINStylizer, variants: list[str], repeats: int, warmup: int,
             device: torch.device | None = None, sizes: tuple = GPU_SIZES) -> list[tuple]:
    """(size, path, FPS, ratio to the reference, max err, mean err) rows for every size and variant."""
    device = device or torch.device("cuda")
    model = model.to(device)
    style = test_image(512, 512, 1).to(device)
    rows = []
    for h, w in sizes:
        rows += _size_rows(model, style, h, w, variants, repeats, warmup)
    return rows


def _size_rows(model: AdaINStylizer, style: torch.Tensor, h: int, w: int, variants: list[str], repeats: int,
               warmup: int) -> list[tuple]:
    device = style.device
    padded, _ = pad_to_grid(test_image(h, w, 0).to(device))  # 1080 -> 1088 (reflect), cropped after
    with torch.inference_mode():
        reference_engine = eager(model, device)
        ref_fps = calls_per_second(lambda: reference_engine.stylize(padded, style)[..., :h, :w], repeats, device,
                                   warmup)
        reference = reference_engine.stylize(padded, style)[..., :h, :w].float()
        mean, std = model.style_stats(style)
    rows = [(f"{w}x{h}", "reference: fp32 eager, style encoded per frame", ref_fps, 1.0, 0.0, 0.0)]
    for name in variants:
        cl, comp, mode = VARIANTS[name]
        rt = Runtime(device, bf16=True, channels_last=cl, compile=comp, compile_mode=mode or "default")
        net = torch_engine(model, rt, FINISH)

        def step(net=net, x=padded):
            return net.frame(x, StyleTarget(mean, std))[..., :h, :w]

        with torch.inference_mode():
            fps = calls_per_second(step, repeats, device, warmup + (3 if comp else 0))
            err = (step().float().clone() - reference).abs()
        label = f"fast: cached stats, bf16, {'channels_last' if cl else 'NCHW'}" + (
            f", torch.compile({mode or 'default'})" if comp else ", eager")
        rows.append((f"{w}x{h}", label, fps, fps / ref_fps, float(err.max()), float(err.mean())))
        del net
        torch._dynamo.reset()
    return rows


def print_gpu(rows: list[tuple], atol: float, mean_atol: float) -> None:
    width = max(len(r[1]) for r in rows)
    print(f"{'size':>9}  {'path':<{width}}  {'FPS':>8}  {'x ref':>6}  {'max err':>8}  {'mean err':>8}")
    for size, label, fps, ratio, err_max, err_mean in rows:
        ok = "" if ratio == 1.0 else ("  PASS" if err_max <= atol and err_mean <= mean_atol else "  FAIL")
        print(f"{size:>9}  {label:<{width}}  {fps:8.1f}  {ratio:5.2f}x  {err_max:8.4f}  {err_mean:8.5f}{ok}")
    print(f"tolerance vs the fp32 reference on [0, 1] outputs: max {atol}, mean {mean_atol}")


def cpu_rows(model: AdaINStylizer, size: int, repeats: int) -> list[tuple[str, float]]:
    """Eager PyTorch, then the stats-input model through the export code: ONNX Runtime and the FP16 IR."""
    from stylepipe.adain.export import StatsModel
    from stylepipe.export.onnx import export_graph, ort_session
    from stylepipe.export.openvino import F32_CONFIG, compile_cpu, convert_onnx, measure_fps

    x, style = test_image(size, size, 0), test_image(size, size, 1)
    mean, std = model.style_stats(style)
    rows: list[tuple[str, float]] = []
    engine = eager(model, torch.device("cpu"))
    with torch.inference_mode():
        rows.append(("baseline: PyTorch eager fp32, style encoded per frame",
                     calls_per_second(lambda: engine.stylize(x, style), repeats)))
        rows.append(("PyTorch eager fp32, style statistics cached",
                     calls_per_second(lambda: engine.frame(x, StyleTarget(mean, std)), repeats)))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, xml = Path(tmp) / "adain.onnx", Path(tmp) / "adain.xml"
        export_graph(StatsModel(model, FINISH).eval(), (x, mean, std), ["content", "style_mean", "style_std"],
                     onnx_path, 13, {})
        feeds = {"content": x.numpy(), "style_mean": mean.numpy(), "style_std": std.numpy()}
        rows.append(("ONNX Runtime (CPU EP)", calls_per_second(partial(ort_session(onnx_path).run, None, feeds),
                                                                repeats)))
        convert_onnx(onnx_path, xml)
        for label, config in (("f32", F32_CONFIG), ("default precision", None)):
            rows.append((f"OpenVINO FP16 IR, {label}", measure_fps(compile_cpu(xml, config), feeds, repeats)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", type=int, default=512, help="CPU: square frame size")
    ap.add_argument("--repeats", type=int, default=None, help="timed frames (default: 200 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=10, help="CUDA: untimed frames first (+3 when compiled)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--variants", default="eager,compile,compile-cl,cudagraphs",
                    help=f"CUDA fast paths, comma-separated from {sorted(VARIANTS)}")
    ap.add_argument("--atol", type=float, default=0.05, help="max |fast - fp32| allowed on [0, 1] outputs")
    ap.add_argument("--mean-atol", type=float, default=0.005, help="mean |fast - fp32| allowed")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, origin = load_model()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device available")
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown:
            raise SystemExit(f"--variants: unknown {unknown}; expected from {sorted(VARIANTS)}")
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; model: {origin}; "
              f"batch 1, {args.repeats or 200} timed frames")
        print_gpu(gpu_rows(model, variants, args.repeats or 200, args.warmup), args.atol, args.mean_atol)
        return
    repeats = args.repeats or 5
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {origin}; "
          f"{args.size}x{args.size}, {repeats} repeats")
    rows = cpu_rows(model, args.size, repeats)
    base = rows[0][1]
    width = max(len(r[0]) for r in rows)
    for name, fps in rows:
        print(f"{name:<{width}}  {fps:7.2f} FPS  {fps / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
