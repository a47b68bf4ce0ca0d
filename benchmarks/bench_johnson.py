"""Johnson's TransformerNet: training it/s (the shared loop's step) and inference FPS, per speed switch.

Variants: eager fp32; bf16 autocast; bf16 + channels_last; bf16 + channels_last + torch.compile (CUDA).
Training uses `train.loop.make_step` on a JohnsonTask (VGG16 loss network to relu4_3: the `weights`
stage's file when present, else random weights of the same shape). On the CPU, `--onnx` also times the
exported graph with ONNX Runtime and OpenVINO (needs onnxruntime/openvino; pure torch otherwise).

    python benchmarks/bench_johnson.py --device cuda --batch 4 --crop 256 --size 512 --pad 40
    python benchmarks/bench_johnson.py --device cpu --batch 2 --crop 64 --size 256 --pad 8 --onnx
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from stylepipe.core.config import Common, TrainJohnson
from stylepipe.core.paths import ENCODER
from stylepipe.core.runtime import Runtime, calls_per_second, resolve_runtime
from stylepipe.johnson.model import JohnsonStylizer, TransformerNet
from stylepipe.johnson.train import build_task
from stylepipe.nn.encoders import build_encoder, load_encoder
from stylepipe.train.loop import make_step

VARIANTS = {  # name: (bf16, channels_last, compile)
    "eager_fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "bf16_channels_last_compile": (True, True, True),
}


def loss_encoder() -> torch.nn.Module:
    try:
        return load_encoder(ENCODER, last="relu4_3")
    except Exception:  # no weights stage output here: same shapes, random weights
        return build_encoder("vgg16_hed", "relu4_3")


def train_its(rt: Runtime, args: argparse.Namespace) -> float:
    cfg = TrainJohnson(styles=["bench"], iterations=1, batch_size=args.batch, crop=args.crop, lr=1e-3,
                       checkpoint_every=1, log_every=1, image_every=1, pad=args.pad)
    net = rt.prepare(TransformerNet(args.pad))
    task = build_task(net, rt.prepare(loss_encoder()), rt.to_device(torch.rand(1, 3, args.crop, args.crop)), cfg)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, fused=rt.device.type == "cuda")
    step = make_step(task, rt)
    content = rt.to_device(torch.rand(args.batch, 3, args.crop, args.crop))
    try:
        return calls_per_second(lambda: step(content, content, optimiser), args.steps, rt.device, args.warmup)
    finally:
        task.extract.close()


@torch.inference_mode()
def infer_fps(rt: Runtime, args: argparse.Namespace) -> float:
    model = rt.compiled(rt.prepare(JohnsonStylizer(TransformerNet(args.pad)).eval()))
    x = rt.to_device(torch.rand(1, 3, args.size, args.size))
    with rt.autocast():
        return calls_per_second(lambda: model(x), args.frames, rt.device, args.warmup)


def exported_fps(args: argparse.Namespace) -> dict[str, float]:
    """ONNX Runtime and OpenVINO (f32 and default precision) on the CPU, through the export code."""
    from stylepipe.export.onnx import export_graph
    from stylepipe.export.openvino import F32_CONFIG, compile_cpu, convert_onnx, measure_fps
    from stylepipe.johnson.export import ort_fps
    from stylepipe.johnson.model import mvn_form

    model = JohnsonStylizer(mvn_form(TransformerNet(args.pad))).eval()
    x = torch.rand(1, 3, args.size, args.size)
    feeds = {"content": x.numpy()}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, xml = Path(tmp) / "johnson.onnx", Path(tmp) / "johnson.xml"
        export_graph(model, (x,), ["content"], onnx_path, 13, {})
        convert_onnx(onnx_path, xml)
        return {
            "onnxruntime": ort_fps(onnx_path, feeds, args.frames),
            "openvino_f32": measure_fps(compile_cpu(xml, F32_CONFIG), feeds, args.frames),
            "openvino_default": measure_fps(compile_cpu(xml), feeds, args.frames),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--size", type=int, default=256, help="inference image size (square)")
    parser.add_argument("--pad", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=None, choices=sorted(VARIANTS))
    parser.add_argument("--onnx", action="store_true", help="also time ONNX Runtime / OpenVINO (CPU)")
    args = parser.parse_args()
    names = args.variants or (list(VARIANTS) if args.device == "cuda" else ["eager_fp32"])
    results: dict[str, dict[str, float]] = {}
    for name in names:
        bf16, cl, comp = VARIANTS[name]
        rt = resolve_runtime(Common(device=args.device, bf16=bf16, channels_last=cl, compile=comp))
        its = train_its(rt, args)
        results[name] = {"train_it_per_s": round(its, 3), "train_images_per_s": round(its * args.batch, 2)}
        results[name]["infer_fps"] = round(infer_fps(rt, args), 2)
        print(name, results[name], flush=True)
    if args.onnx:
        results["exported_cpu"] = {k: round(v, 2) for k, v in exported_fps(args).items()}
    info = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "threads": torch.get_num_threads(), **{k: getattr(args, k) for k in ("batch", "crop", "size", "pad")}}
    print(json.dumps({"setup": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
