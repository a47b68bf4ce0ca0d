"""OAK-1 figures per exported model: GMAC/frame, parameters, OpenVINO CPU FPS, FP16 error, Myriad X operator
check, projected OAK-1 FPS.

Trained models come from the export stages' outputs (models/export/onnx, openvino, johnson/<style>): their
GMAC, parameters, FP16 errors and operator checks are read from the stages' report.json files, and OpenVINO
CPU FPS is measured afresh on their IR at the export size. AdaIN variants (every `--adain-layers` x
`--adain-widths`: the encoder cut at that layer, a decoder of that width) and Johnson width variants
(`--widths`) are built untrained (speed and compute do not depend on the weights), exported through the
same code, checked and measured the same way. Projected OAK-1 FPS: stylepipe.export.myriad.projection (cited RVC2
figures; see README, The OAK-1 demo).

    python benchmarks/bench_oak.py                      # table for the models in models/export
    python benchmarks/bench_oak.py --adain-layers relu3_1 relu4_1 --adain-widths 1 0.5 --widths 1 0.5
    python benchmarks/bench_oak.py --widths 1 0.75 0.5 --pad 8 --repeats 5 --json figures.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from stylepipe.adain.engine import Finish
from stylepipe.adain.export import BakedModel, StatsModel, exported_origin
from stylepipe.adain.model import ADAIN_LAYERS, AdaINStylizer, Decoder
from stylepipe.core import paths
from stylepipe.core.config import parse_params
from stylepipe.core.paths import STATS_ONNX, johnson_onnx_name
from stylepipe.export.myriad.opcheck import check_graph
from stylepipe.export.myriad.projection import oak_projection
from stylepipe.export.onnx import ExportError, count_macs, deterministic_content, export_graph
from stylepipe.export.openvino import F32_CONFIG, compile_cpu, convert_onnx, fp16_compute_error, measure_fps
from stylepipe.johnson.model import JohnsonStylizer, TransformerNet, mvn_form
from stylepipe.nn.encoders import build_encoder

COLUMNS = ("model", "gmac", "params_m", "ov_cpu_fps_f32", "ov_cpu_fps_default", "ir_fp16_weights_max_err",
           "fp16_arith_max_err", "myriad_ops_ok", "oak1_fps", "oak1_fps_optimistic")  # fmt: skip


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def ov_fps(xml: Path, feeds: dict[str, Any], repeats: int) -> tuple[float, float]:
    """OpenVINO CPU FPS of one IR: f32 inference precision, then the CPU's default (bf16 where it can)."""
    return (measure_fps(compile_cpu(xml, F32_CONFIG), feeds, repeats),
            measure_fps(compile_cpu(xml), feeds, repeats))  # fmt: skip


def row(name: str, gmac: float, n_params: int, fps: tuple[float, float], ir_err: float | None,
        arith_err: float | str | None, ops_ok: bool | None) -> dict[str, Any]:  # fmt: skip
    proj = oak_projection(gmac)
    return {"model": name, "gmac": round(gmac, 2), "params_m": round(n_params / 1e6, 3),
            "ov_cpu_fps_f32": round(fps[0], 2), "ov_cpu_fps_default": round(fps[1], 2),
            "ir_fp16_weights_max_err": ir_err, "fp16_arith_max_err": arith_err, "myriad_ops_ok": ops_ok,
            "oak1_fps": proj["fps"], "oak1_fps_optimistic": proj["fps_optimistic"]}  # fmt: skip


def adain_rows(h: int, w: int, repeats: int) -> list[dict[str, Any]]:
    onnx_rep, ov_rep = _read(paths.ONNX_DIR / "report.json"), _read(paths.OPENVINO_DIR / "report.json")
    if onnx_rep is None or ov_rep is None:
        print("AdaIN: no export reports (run `dvc repro export_openvino`); skipped")
        return []
    content = deterministic_content(h, w).numpy()
    unit = torch.ones(1, exported_origin(paths.ONNX_DIR / STATS_ONNX).channels, 1, 1).numpy()
    stats = {"style_mean": unit, "style_std": unit}
    arith = ov_rep.get("fp16_compute_error", {}).get("max_abs_diff")
    layer = f" ({onnx_rep['adain_layer']}, width {onnx_rep['decoder_width']:g})" if "adain_layer" in onnx_rep else ""
    rows = []
    for name, entry in onnx_rep["models"].items():
        feeds = {"content": content, **(stats if "stats" in name else {})}
        ov = ov_rep["models"][name]
        fps = ov_fps(paths.OPENVINO_DIR / ov["xml"], feeds, repeats)
        rows.append(row(name.removesuffix(".onnx") + layer, entry["gmac"], entry["params"], fps,
                        round(ov["max_abs_diff_vs_ort"], 4), arith, entry["opcheck"]["ok"]))  # fmt: skip
    return rows


def fp16_error(net: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> float | str:
    """Max |float16 - float32| forward difference, or 'overflow' where the float16 forward is not finite."""
    try:
        return round(fp16_compute_error(net, args)["max_abs_diff"], 5)
    except ExportError:
        return "overflow"


def measured_row(name: str, net: torch.nn.Module, content: torch.Tensor, path: Path, opset: int,
                 repeats: int) -> dict[str, Any]:  # fmt: skip
    """Export an untrained content -> stylized network to `path`, check its operators, convert it to IR
    and measure it."""
    export_graph(net, (content,), ["content"], path, opset, {"variant": name})
    xml = path.with_suffix(".xml")
    convert_onnx(path, xml)
    macs, n_params = count_macs(net, (content,))
    fps = ov_fps(xml, {"content": content.numpy()}, repeats)
    return row(name, macs / 1e9, n_params, fps, None, fp16_error(net, (content,)), check_graph(path).ok)


def adain_variant_rows(encoder: str, layers: list[str], widths: list[float], h: int, w: int, opset: int,
                       repeats: int) -> list[dict[str, Any]]:  # fmt: skip
    """Untrained AdaIN models (the encoder cut at each layer, a decoder of each width) with one style baked
    in, as adain_baked.onnx is: the on-device network of the style-input model too, less two inputs. Each
    decoder's input scale is calibrated on the content's features, as train_recon starts a decoder, and the
    baked statistics are a second probe image's: FP16 errors of unscaled features and arbitrary statistics
    would describe no model that is ever exported."""
    rows = []
    content, style = deterministic_content(h, w), deterministic_content(h, w, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        for layer in layers:
            for width in widths:
                torch.manual_seed(0)
                stylizer = AdaINStylizer(build_encoder(encoder, layer), Decoder(encoder, layer, width)).eval()
                with torch.no_grad():
                    stylizer.decoder.calibrate(stylizer.encoder.encode(content))
                    mean, std = stylizer.style_stats(style)
                net = BakedModel(StatsModel(stylizer, Finish()), mean, std).eval()
                name = f"adain {layer} width {width:g} ({encoder}, untrained)"
                rows.append(measured_row(name, net, content, Path(tmp) / f"adain_{layer}_w{int(width * 1000)}.onnx",
                                         opset, repeats))  # fmt: skip
    return rows


def johnson_rows(styles: list[str], h: int, w: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    feeds = {"content": deterministic_content(h, w).numpy()}
    for style in styles:
        rep = _read(paths.JOHNSON_EXPORT_DIR / style / "report.json")
        if rep is None:
            print(f"johnson {style}: no export report (run `dvc repro export_johnson@{style}`); skipped")
            continue
        xml = paths.JOHNSON_EXPORT_DIR / style / rep["openvino"]["xml"]
        rows.append(row(f"johnson_{style} (pad {rep['pad']})", rep["onnx"]["gmac"], rep["onnx"]["params"],
                        ov_fps(xml, feeds, repeats), round(rep["openvino"]["max_abs_diff_vs_ort"], 4),
                        rep.get("fp16_compute_error", {}).get("max_abs_diff"),
                        rep["onnx"].get("opcheck", {}).get("ok")))  # fmt: skip
    return rows


def width_rows(widths: list[float], pad: int, h: int, w: int, opset: int, repeats: int) -> list[dict[str, Any]]:
    """Untrained TransformerNet(pad, width) exported and measured like the trained ones."""
    rows = []
    content = deterministic_content(h, w)
    with tempfile.TemporaryDirectory() as tmp:
        for width in widths:
            torch.manual_seed(0)
            net = JohnsonStylizer(mvn_form(TransformerNet(pad, width))).eval()
            onnx_path = Path(tmp) / johnson_onnx_name(f"w{int(width * 1000)}")
            rows.append(measured_row(f"johnson width {width:g} (pad {pad}, untrained)", net, content,
                                     onnx_path, opset, repeats))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join("-" if r[c] is None else str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--repeats", type=int, default=5, help="timed OpenVINO runs per model and precision")
    ap.add_argument("--widths", type=float, nargs="*", default=[1.0, 0.75, 0.5],
                    help="Johnson width multipliers to build untrained and measure (none: skip)")  # fmt: skip
    ap.add_argument("--pad", type=int, default=8, help="the width variants' reflect pad (train_johnson.pad)")
    ap.add_argument("--adain-layers", nargs="*", default=list(ADAIN_LAYERS), choices=ADAIN_LAYERS,
                    help="AdaIN layers to build untrained models at (none: skip)")  # fmt: skip
    ap.add_argument("--adain-widths", type=float, nargs="*", default=[1.0, 0.5],
                    help="AdaIN decoder widths (adain.decoder_width) to build at each layer")  # fmt: skip
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    params = parse_params(yaml.safe_load(args.params.read_text()))
    h, w = params.export.height, params.export.width
    print(f"export size {h}x{w}; OpenVINO CPU threads: torch sees {torch.get_num_threads()}")
    rows = adain_rows(h, w, args.repeats) + johnson_rows(params.train_johnson.styles, h, w, args.repeats)
    rows += adain_variant_rows(params.weights.encoder, args.adain_layers, args.adain_widths, h, w,
                               params.export.opset, args.repeats)  # fmt: skip
    rows += width_rows(args.widths, args.pad, h, w, params.export.opset, args.repeats)
    print(markdown(rows))
    print(f"\nprojection: {oak_projection(1.0)['basis']} -> {oak_projection(1.0)['effective_gmac_per_s']} GMAC/s;"
          f" {oak_projection(1.0)['source']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
