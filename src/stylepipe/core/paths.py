"""The artifact layout: where each stage writes (relative to the repo root). dvc.yaml and the
Snakefile declare the same paths; stage functions take these as defaults."""

from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw")
PREPARED = Path("data/prepared")
ENCODER_DIR = Path("models/encoder")
ENCODER = ENCODER_DIR / "encoder.pt"
RECON_DIR = Path("models/recon")
RECON_DECODER = RECON_DIR / "decoder.pt"
ADAIN_DIR = Path("models/adain")
DECODER = ADAIN_DIR / "decoder.pt"
STYLE_BANK = ADAIN_DIR / "style_bank.pt"
JOHNSON_DIR = Path("models/johnson")  # one folder per style: models/johnson/<style>/
JOHNSON_MODEL = "transformer_net.pt"
STYLE_NAME = r"^[A-Za-z0-9_-]+$"  # a folder name under JOHNSON_DIR and a DVC foreach key
JOHNSON_EXPORT_DIR = Path("models/export/johnson")  # models/export/johnson/<style>/
ONNX_DIR = Path("models/export/onnx")
STATS_ONNX = "adain_stats.onnx"  # AdaIN with the style statistics as inputs, in ONNX_DIR
BAKED_ONNX = "adain_baked.onnx"  # AdaIN with one style baked in, in ONNX_DIR
OPENVINO_DIR = Path("models/export/openvino")
BLOB_DIR = Path("models/export/blob")
BLOB = BLOB_DIR / "adain_baked.blob"
STYLIZER_DIR = Path("models/stylizer")  # the model folder the package stage writes (adain.folder)
DEMO_DIR = Path("demo")
REPORTS = Path("reports")


def johnson_onnx_name(style: str) -> str:
    """One '.' only (blobconverter breaks on more): johnson_<style>.onnx."""
    return f"johnson_{style}.onnx"
