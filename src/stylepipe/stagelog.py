"""The one line a stage ends with: what it did, how long it took, and the JSON file holding its full record.

A stage's return value is its whole record (every figure, hash and path), which it also writes to a JSON
file in its outputs; the log a person reads gets the few figures that say whether the stage went well.
Plain data only (no torch), so the CLI imports it when a stage finishes, and no stage's code depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stylepipe.train.progress import duration

Record = Mapping[str, Any]

# Where each stage writes its full record ({style}: the style of a per-style stage).
RECORD_FILES: dict[str, str] = {
    "download": "data/raw/SOURCE.json",
    "weights": "models/encoder/encoder.json",
    "preprocess": "data/prepared/report.json",
    "train_recon": "models/recon/summary.json",
    "train_adain": "models/adain/summary.json",
    "train_johnson": "models/johnson/{style}/summary.json",
    "evaluate": "reports/evaluate/metrics_detail.json",
    "export_onnx": "models/export/onnx/report.json",
    "export_openvino": "models/export/openvino/report.json",
    "package": "models/stylizer/model.json",
    "export_johnson": "models/export/johnson/{style}/report.json",
    "compile_blob": "models/export/blob/blob.json",
    "demo": "demo/demo.json",
}


def _kept(report: Record, domain: str) -> int:
    part = report.get(domain, {})
    return int(part.get("train", 0)) + int(part.get("val", 0))


def _preprocess(r: Record) -> str:
    return f"{_kept(r, 'content')} photos and {_kept(r, 'style')} paintings kept, {len(r.get('rejected', []))} rejected"


def _training(r: Record) -> str:
    text = f"{r['steps']} steps, loss {r['final']['loss']:.4g}" if r.get("final") else f"{r['steps']} steps"
    return text + (f" (resumed at step {r['resumed_from']})" if r.get("resumed_from") else "")


def _evaluate(r: Record) -> str:
    failed = [name for name, ok in r["checks"].items() if not ok]
    verdict = "every check passes" if not failed else "checks FAILED: " + ", ".join(failed)
    return (f"style loss {r['style_loss']:.0f}, SSIM {r['ssim_content']:.3f}, histogram distance "
            f"{r['hist_distance_style']:.3f}; {verdict}")


def _export_onnx(r: Record) -> str:
    worst = max(m["max_abs_diff"] for m in r["models"].values())
    return f"{len(r['models'])} ONNX graphs, max |ONNX Runtime - PyTorch| {worst:.2g}"


def _export_johnson(r: Record) -> str:
    return (f"ONNX max diff {r['onnx']['max_abs_diff']:.2g}, OpenVINO IR max diff "
            f"{r['openvino']['max_abs_diff_vs_ort']:.2g}")


def _compile_blob(r: Record) -> str:
    return f"{len(r.get('models', {}))} blobs compiled" if r.get("compiled") else f"no blob: {r.get('reason')}"


def _package(r: Record) -> str:
    int8 = any(name.startswith("openvino_int8/") for name in r["files"])
    return f"model folder of {len(r['files'])} files (OpenVINO IR{' and its INT8 copy' if int8 else ''})"


HEADLINES: dict[str, Callable[[Record], str]] = {
    "download": lambda r: f"{r['files']} files ({r['source']})",  # the stage returns the count of SOURCE.json's list
    "weights": lambda r: f"encoder {r['encoder']} from {r['source']}",
    "preprocess": _preprocess,
    "train_recon": _training,
    "train_adain": _training,
    "train_johnson": _training,
    "evaluate": _evaluate,
    "export_onnx": _export_onnx,
    "export_openvino": lambda r: f"{len(r['models'])} OpenVINO IRs (FP16 weights), parity with ONNX Runtime held",
    "package": _package,
    "export_johnson": _export_johnson,
    "compile_blob": _compile_blob,
    "demo": lambda r: f"{r['frames']} frames at {r['inference_fps']:.1f} FPS ({r['backend']})",
}


def summary_line(stage: str, record: Record, seconds: float, style: str | None = None) -> str:
    """`stylepipe train_adain: done in 3 min 1 s: 600 steps, loss 3.41; full record: models/adain/summary.json`."""
    name = f"{stage}@{style}" if style else stage
    where = RECORD_FILES[stage].format(style=style)
    return f"stylepipe {name}: done in {duration(seconds)}: {HEADLINES[stage](record)}; full record: {where}"
