"""The export_johnson stage: one style's TransformerNet to ONNX and OpenVINO IR, through the same code as AdaIN.

models/export/johnson/<style>/ holds johnson_<style>.onnx (input `content` [1, 3, H, W] RGB float in
[0, 1], output `stylized` in [0, 1]), its FP16 IR (.xml/.bin) and report.json. The exported graph is the
MVN form of the network (every InstanceNorm2d as (x - mean) / (sqrt(var) + eps): no
InstanceNormalization op, which the Myriad X cannot run); ONNX Runtime's output is checked against the
trained network itself (nn.InstanceNorm2d) within export.atol, the IR against ONNX Runtime within
export.openvino_atol / openvino_mean_atol, activations against the FP16 range, and the graph with the
Myriad X operator check. The report also holds single-frame CPU speeds: PyTorch eager, ONNX Runtime and
OpenVINO (f32 and the CPU's default precision) at export.height x export.width.

A separate stage from train_johnson, so export parameters (size, opset, tolerances) re-run only this.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.io import atomic_dir, write_json
from stylepipe.core.paths import johnson_onnx_name
from stylepipe.core.runtime import calls_per_second
from stylepipe.export.myriad.target import MYRIAD_X
from stylepipe.export.onnx import ExportError, check_model, deterministic_content, export_graph, ort_session
from stylepipe.export.openvino import check_fp16_range, convert_and_check, fp16_compute_error, probe_images
from stylepipe.johnson.model import JohnsonStylizer, load_johnson, model_path, mvn_form

DOC = "Johnson fast style transfer (stylepipe): RGB float [0,1] NCHW in, RGB float [0,1] out"


def eager_fps(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        return calls_per_second(partial(model, x), repeats)


def ort_fps(path: Path, feeds: dict[str, np.ndarray], repeats: int) -> float:
    return calls_per_second(partial(ort_session(path).run, None, feeds), repeats)


def run_export_johnson(
    params: Params, style: str, model_root: Path = paths.JOHNSON_DIR, out_root: Path = paths.JOHNSON_EXPORT_DIR
) -> dict[str, Any]:
    """Export, check and time style's network; writes models/export/johnson/<style>/report.json."""
    cfg = params.export
    if style not in params.train_johnson.styles:
        raise ExportError(f"style {style!r} is not listed in params.yaml train_johnson.styles")
    net, meta = load_johnson(model_path(style, model_root))
    trained = JohnsonStylizer(net, style).eval()
    exported = JohnsonStylizer(mvn_form(net), style).eval()
    content = deterministic_content(cfg.height, cfg.width, params.common.seed)
    with torch.no_grad():
        mvn_diff = float((exported(content) - trained(content)).abs().max())
    fname = johnson_onnx_name(style)
    metadata = {
        "input_color_order": "RGB", "input_scale": "float32 in [0, 1]", "input_layout": "NCHW",
        "output": "stylized: RGB float32 in [0, 1], NCHW", "input_size": f"{cfg.height}x{cfg.width}",
        "method": "johnson", "style": style, "pad": str(meta["pad"]), "width_multiplier": str(meta["width"]),
        "loss_encoder": meta["encoder"],
    }
    report: dict[str, Any] = {
        "style": style, "pad": meta["pad"], "width_multiplier": meta["width"], "height": cfg.height,
        "width": cfg.width, "opset": cfg.opset,
        "atol": cfg.atol, "openvino_atol": cfg.openvino_atol, "mvn_vs_instancenorm_max_diff": mvn_diff,
        "fp16_range": check_fp16_range(exported, [(x,) for x in probe_images(cfg.height, cfg.width, 0)]),
        "fp16_compute_error": fp16_compute_error(exported, (content,)),
    }
    feeds = {"content": content.numpy()}
    with atomic_dir(out_root / style) as tmp:
        export_graph(exported, (content,), ["content"], tmp / fname, cfg.opset, metadata, doc=DOC)
        report["onnx"] = check_model(trained, (content,), ["content"], tmp / fname, cfg.atol, (MYRIAD_X,))
        report["openvino"] = convert_and_check(tmp / fname, tmp / fname.replace(".onnx", ".xml"), feeds, cfg)
        report["cpu_fps"] = {
            "torch_eager_f32": round(eager_fps(trained, content, cfg.speed_repeats), 3),
            "onnxruntime": round(ort_fps(tmp / fname, feeds, cfg.speed_repeats), 3),
            **{f"openvino_{k}": v for k, v in report["openvino"]["cpu_fps"].items()},
            "threads": torch.get_num_threads(),
        }
        write_json(tmp / "report.json", report)
    return report
