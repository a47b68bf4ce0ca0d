"""The `export_openvino` stage: both AdaIN ONNX graphs to OpenVINO IR (FP16 weights), checked for parity
with ONNX Runtime and for the FP16 range over every style of the bank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openvino as ov
import torch

from stylepipe.adain.export import model_record, stats_model
from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.io import atomic_dir, write_json
from stylepipe.core.paths import BAKED_ONNX, STATS_ONNX
from stylepipe.export.onnx import ExportError
from stylepipe.export.openvino import check_fp16_range, convert_and_check, fp16_compute_error, probe_images
from stylepipe.nn.statistics import StyleBank


def range_inputs(height: int, width: int, bank: StyleBank, seed: int) -> list[tuple[torch.Tensor, ...]]:
    """The probe images, each with every bank style's statistics."""
    images = probe_images(height, width, seed)
    return [(img, bank.mean[i : i + 1], bank.std[i : i + 1]) for img in images for i in range(len(bank))]


def run_export_openvino(
    params: Params,
    onnx_dir: Path = paths.ONNX_DIR,
    out_dir: Path = paths.OPENVINO_DIR,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
    bank_path: Path = paths.STYLE_BANK,
) -> dict[str, Any]:
    """Convert both ONNX models to FP16 IR, check parity and the FP16 range, write out_dir/report.json."""
    cfg = params.export
    for name in (STATS_ONNX, BAKED_ONNX):
        if not (onnx_dir / name).is_file():
            raise ExportError(f"{onnx_dir / name}: not found (run the export_onnx stage first)")
    stats = stats_model(params, encoder_path, decoder_path)
    bank = StyleBank.load_trained(bank_path, stats.origin)
    probes = range_inputs(cfg.height, cfg.width, bank, params.common.seed)
    report: dict[str, Any] = {
        "openvino_version": ov.get_version(),
        "openvino_atol": cfg.openvino_atol,
        "height": cfg.height,
        "width": cfg.width,
        "speed_repeats": cfg.speed_repeats,
        "parity_precision": "f32",
        **model_record(stats),
        "fp16_range": check_fp16_range(stats, probes, cfg.stats_scale),
        "fp16_compute_error": fp16_compute_error(stats, probes[0]),
        "models": {},
    }
    content, mean, std = (t.numpy() for t in probes[0])
    feeds = {
        STATS_ONNX: {"content": content, "style_mean": mean, "style_std": std},
        BAKED_ONNX: {"content": content},
    }
    with atomic_dir(out_dir) as tmp:
        for name, feed in feeds.items():
            xml = tmp / name.replace(".onnx", ".xml")
            report["models"][name] = convert_and_check(onnx_dir / name, xml, feed, cfg)
        write_json(tmp / "report.json", report)
    return report
