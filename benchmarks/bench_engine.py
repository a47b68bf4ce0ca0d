"""Frames per second of the AdaIN engine on the CPU, every backend and precision side by side in one run.

Rows: torch eager float32 (the baseline), torch bf16 autocast, OpenVINO at the CPU plugin's default precision,
at f32, and the NNCF INT8 IR; each with its speedup over the baseline and its output's difference from the
baseline's (mean and max absolute, on [0, 1] images). One frame, style statistics cached, palette and detail
finishing included. Uses the pipeline's models when present (models/encoder, models/adain), else a randomly
initialised model of the default architecture (speed only: its differences say nothing of picture quality).

  python benchmarks/bench_engine.py --sizes 256x256 512x512 1920x1080 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.ir import OpenVINOBackend, quantize_ir, write_ir
from stylepipe.adain.model import AdaINStylizer, Decoder, load_stylizer
from stylepipe.core.paths import DECODER, ENCODER
from stylepipe.core.runtime import Runtime, calls_per_second
from stylepipe.core.tiling import pad_to_grid
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StatsOrigin


def test_image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 9, 16, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.08 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def the_model() -> tuple[AdaINStylizer, str]:
    if ENCODER.is_file() and DECODER.is_file():
        return load_stylizer(ENCODER, DECODER), f"trained ({DECODER})"
    torch.manual_seed(0)
    model = AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)).eval()
    return model, "random weights, default architecture (relu3_1, width 0.5)"


def engines(model: AdaINStylizer, workdir: Path, finish: Finish) -> dict[str, Engine]:
    cpu = torch.device("cpu")
    ir = write_ir(model.encoder, model.decoder, workdir / "f32", {})[0].parent
    calibration = [test_image(256, 256, 100 + i) for i in range(16)]
    targets = [model.encoder.encode(c).detach() for c in calibration]
    int8 = quantize_ir(ir, workdir / "int8", calibration, targets)[0].parent
    origin, stride = StatsOrigin.of(model), model.encoder.stride

    def ov(path: Path, precision: str) -> Engine:
        return Engine(OpenVINOBackend(path, precision), origin, stride, finish)

    return {
        "torch eager f32": torch_engine(model, Runtime(cpu, False, False, False), finish),
        "torch bf16 autocast": torch_engine(model, Runtime(cpu, True, False, False), finish),
        "openvino default": ov(ir, "default"),
        "openvino f32": ov(ir, "f32"),
        "openvino int8": ov(int8, "int8"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "512x512", "1920x1080"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, what = the_model()
    style_image = test_image(256, 256, 1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = engines(model, Path(tmp), Finish("histogram", 1.0))
        base = runs["torch eager f32"]
        style = StyleTarget(*base.style_stats(style_image), palette_of(style_image[0])[None])
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; model: {what}")
        print(f"{'size':>9}  {'path':<20}  {'FPS':>7}  {'x f32':>6}  {'mean diff':>9}  {'max diff':>8}")
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            content, _ = pad_to_grid(test_image(h, w, 0))
            with torch.inference_mode():
                reference = base.frame(content, style)
                base_fps = None
                for name, engine in runs.items():
                    fps = calls_per_second(lambda e=engine, x=content: e.frame(x, style), args.repeats)
                    base_fps = base_fps or fps
                    diff = (engine.frame(content, style) - reference).abs()
                    print(f"{size:>9}  {name:<20}  {fps:7.2f}  {fps / base_fps:5.2f}x  {float(diff.mean()):9.5f}  "
                          f"{float(diff.max()):8.4f}", flush=True)


if __name__ == "__main__":
    main()
