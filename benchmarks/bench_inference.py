"""Inference speed of the AdaIN stylizer on this machine, naive baseline vs the project's paths.

Baseline (what the popular PyTorch port does): eager fp32 PyTorch, the style image encoded again for
every frame. Then: PyTorch with the style statistics cached, ONNX Runtime and OpenVINO (FP16 IR,
f32 and the CPU's default precision) on the exported graphs. Uses the trained models of a `dvc repro`
when present, random weights otherwise (speed does not depend on the values).

    python benchmarks/bench_inference.py [--size 256] [--repeats 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stylepipe.models.adain import AdaINStylizer, Decoder, load_stylizer
from stylepipe.models.encoders import build_encoder
from stylepipe.paths import DECODER, ENCODER


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Frames per second over `repeats` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return repeats / (time.perf_counter() - t0)


def load_model() -> tuple[AdaINStylizer, str]:
    enc, dec = ENCODER, DECODER
    if enc.is_file() and dec.is_file():
        return load_stylizer(enc, dec), "trained (models/adain)"
    return AdaINStylizer(build_encoder("vgg16_hed"), Decoder("vgg16_hed")).eval(), "random weights"


def export_onnx(model: AdaINStylizer, size: int, path: Path) -> None:
    class Stats(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, c, mean, std):
            return self.m(c, mean, std)

    x = torch.rand(1, 3, size, size)
    m, s = model.style_stats(x)
    torch.onnx.export(Stats(), (x, m, s), str(path), input_names=["content", "style_mean", "style_std"],
                      output_names=["stylized"], opset_version=13, dynamo=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, origin = load_model()
    x = torch.rand(1, 3, args.size, args.size)
    style = torch.rand(1, 3, args.size, args.size)
    mean, std = model.style_stats(style)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {origin}; "
          f"{args.size}x{args.size}, {args.repeats} repeats")
    rows: list[tuple[str, float]] = []
    with torch.inference_mode():
        rows.append(("baseline: PyTorch eager fp32, style encoded per frame", timed(lambda: model.stylize(x, style),
                                                                                     args.repeats)))
        rows.append(("PyTorch eager fp32, style statistics cached", timed(lambda: model(x, mean, std), args.repeats)))
    import onnxruntime as ort
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "adain.onnx"
        export_onnx(model, args.size, onnx_path)
        feeds = {"content": x.numpy(), "style_mean": mean.numpy(), "style_std": std.numpy()}
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        rows.append(("ONNX Runtime (CPU EP)", timed(lambda: sess.run(None, feeds), args.repeats)))
        core = ov.Core()
        ir = ov.convert_model(str(onnx_path))
        xml = Path(tmp) / "adain.xml"
        ov.save_model(ir, str(xml), compress_to_fp16=True)
        ov_feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        for label, config in (("f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("default precision", {})):
            req = core.compile_model(str(xml), "CPU", config).create_infer_request()
            rows.append((f"OpenVINO FP16 IR, {label}", timed(lambda r=req: r.infer(ov_feeds), args.repeats)))
    base = rows[0][1]
    width = max(len(r[0]) for r in rows)
    for name, fps in rows:
        print(f"{name:<{width}}  {fps:7.2f} FPS  {fps / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
