"""ONNX -> OpenVINO IR (FP16 weights): conversion, parity vs ONNX Runtime, the FP16 range, CPU speed.

Parity runs the IR on the CPU with INFERENCE_PRECISION_HINT=f32 (the CPU would otherwise pick bf16 where
it can, which is not what is being checked). The FP16 range check runs the PyTorch network in float32
and compares the largest magnitude of every activation, and of the squared deviations inside the AdaIN
statistics, with the FP16 maximum (65504): the Myriad X computes in FP16 only. The FP16-vs-FP32 error is
reported twice: the IR's (FP16 weights, f32 inference, vs ONNX Runtime) and the network's in FP16
arithmetic (a float16 PyTorch forward vs float32, on the first probe image).
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import nn

from stylepipe.core.io import file_digest
from stylepipe.core.runtime import calls_per_second
from stylepipe.export.onnx import ExportError, deterministic_content, ort_run

FP16_MAX = 65504.0
F32_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def convert_onnx(onnx_path: Path, xml_path: Path) -> ov.Model:
    """Convert one ONNX file to IR (weights compressed to FP16) at xml_path (+ .bin)."""
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=True)
    return model


def ir_weight_types(xml_path: Path) -> dict[str, int]:
    """Histogram of the element types of the IR's Constant nodes (FP16 weights show up as f16)."""
    counts: dict[str, int] = {}
    for op in ov.Core().read_model(str(xml_path)).get_ops():
        if op.get_type_name() == "Constant":
            t = op.get_output_element_type(0).get_type_name()
            counts[t] = counts.get(t, 0) + 1
    return counts


def compile_cpu(xml_path: Path, config: dict[str, str] | None = None) -> ov.CompiledModel:
    return ov.Core().compile_model(str(xml_path), "CPU", config or {})


def ov_run(compiled: ov.CompiledModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(compiled(feeds)[compiled.output(0)])


def measure_fps(compiled: ov.CompiledModel, feeds: dict[str, np.ndarray], repeats: int) -> float:
    """Frames per second of synchronous single-frame inference (one warm-up, then `repeats` runs)."""
    return calls_per_second(partial(ov_run, compiled, feeds), repeats)


def fp16_range(
    model: nn.Module, inputs: list[tuple[torch.Tensor, ...]], stats_scale: float = 1.0
) -> dict[str, Any]:
    """Largest |activation| over every submodule output and the largest squared deviation (feat-mean)^2
    / stats_scale^2 of the features AdaIN re-normalises (the encoder's last layer, whichever the model's
    AdaIN layer), over a list of input tuples; compared with FP16's maximum."""
    peak = {"activation": 0.0, "squared_deviation": 0.0}
    where = {"activation": ""}

    def hook(name: str):
        def fn(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                v = float(out.detach().abs().max())
                if v > peak["activation"]:
                    peak["activation"], where["activation"] = v, name

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if not list(m.children())]
    try:
        with torch.no_grad():
            for args in inputs:
                model(*args)
                feat = model.encoder.encode(args[0]) if hasattr(model, "encoder") else None
                if feat is not None:
                    dev = (feat - feat.mean(dim=(2, 3), keepdim=True)) / stats_scale
                    peak["squared_deviation"] = max(peak["squared_deviation"], float(dev.pow(2).max()))
    finally:
        for h in handles:
            h.remove()
    worst = max(peak.values())
    return {
        "max_abs_activation": peak["activation"],
        "max_activation_at": where["activation"],
        "max_squared_deviation": peak["squared_deviation"],
        "fp16_max": FP16_MAX,
        "headroom": FP16_MAX / worst if worst else float("inf"),
        "ok": worst < FP16_MAX,
    }


def check_fp16_range(
    model: nn.Module, inputs: list[tuple[torch.Tensor, ...]], stats_scale: float = 1.0
) -> dict:
    """fp16_range, raising ExportError on overflow."""
    rng = fp16_range(model, inputs, stats_scale)
    if not rng["ok"]:
        raise ExportError(
            f"FP16 overflow: max |activation| {rng['max_abs_activation']:.0f} "
            f"(at {rng['max_activation_at']}), "
            f"max AdaIN squared deviation {rng['max_squared_deviation']:.0f} vs FP16 max {FP16_MAX:.0f}; "
            "the Myriad X would produce inf/NaN. Raise export.stats_scale (squared-deviation overflow) "
            "or retrain with smaller activations."
        )
    return rng


def fp16_compute_error(model: nn.Module, args: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """|float16 forward - float32 forward| (max, mean) of a copy of `model`: the Myriad X's FP16 arithmetic
    emulated on the CPU (OpenVINO's CPU plugin has no FP16 inference on most x86 CPUs)."""
    with torch.no_grad():
        ref = model(*args).float()
        got = copy.deepcopy(model).half()(*(a.half() for a in args)).float()
    err = (got - ref).abs()
    if not torch.isfinite(err).all():
        raise ExportError("FP16 forward produced inf/NaN: the Myriad X would too (see the FP16 range check)")
    return {"max_abs_diff": float(err.max()), "mean_abs_diff": float(err.mean())}


def probe_images(height: int, width: int, seed: int) -> list[torch.Tensor]:
    """Deterministic probe images [1, 3, H, W]: gradient+noise, pure noise, a hard checkerboard."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    board = (((yy // 8) + (xx // 8)) % 2).float().expand(1, 3, height, width)
    return [deterministic_content(height, width, seed), torch.rand(1, 3, height, width, generator=gen), board]


def convert_and_check(onnx_path: Path, xml_path: Path, feeds: dict[str, np.ndarray], cfg: Any) -> dict[str, Any]:
    convert_onnx(onnx_path, xml_path)
    ref = ort_run(onnx_path, feeds)
    compiled = compile_cpu(xml_path, F32_CONFIG)
    err = np.abs(ov_run(compiled, feeds) - ref)
    diff, mean_diff = float(err.max()), float(err.mean())
    if not (diff <= cfg.openvino_atol and mean_diff <= cfg.openvino_mean_atol):
        raise ExportError(
            f"{xml_path.name}: OpenVINO (FP16 IR, f32 inference) differs from ONNX Runtime by max {diff:.3g} "
            f"/ mean {mean_diff:.3g}; allowed export.openvino_atol={cfg.openvino_atol:g} / "
            f"export.openvino_mean_atol={cfg.openvino_mean_atol:g}"
        )
    types = ir_weight_types(xml_path)
    if "f16" not in types:
        raise ExportError(f"{xml_path.name}: IR holds no FP16 constants ({types}); compression failed")
    fps = {
        "f32": measure_fps(compiled, feeds, cfg.speed_repeats),
        "default": measure_fps(compile_cpu(xml_path), feeds, cfg.speed_repeats),
    }
    return {
        "xml": xml_path.name,
        "bin_bytes": xml_path.with_suffix(".bin").stat().st_size,
        "bin_sha256": file_digest(xml_path.with_suffix(".bin")),
        "max_abs_diff_vs_ort": diff,
        "mean_abs_diff_vs_ort": mean_diff,
        "constant_types": types,
        "cpu_fps": {k: round(v, 3) for k, v in fps.items()},
    }


