"""The `export_onnx` stage: AdaIN to ONNX (style statistics as inputs, and one style baked in).

Both graphs take `content` [1, 3, H, W] float32 RGB in [0, 1] (NCHW) and return `stylized` in [0, 1].
They trace the inference engine itself (`adain.engine` on the torch backend, `adain.fast`): its encoder and
decoder modules, its AdaIN blend and its finishing step (the content's fine detail, the clamp), so a graph
computes what `stylize` computes; the palette match (a sort, which the Myriad X lacks) stays on the host.
Each graph is checked against that module with ONNX Runtime and against the Myriad X operator set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from stylepipe.adain.engine import Engine, Finish
from stylepipe.adain.fast import TorchBackend, torch_engine
from stylepipe.adain.model import AdaINStylizer, load_stylizer
from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.io import atomic_dir, write_json
from stylepipe.core.paths import BAKED_ONNX, STATS_ONNX
from stylepipe.core.runtime import Runtime
from stylepipe.export.myriad.target import MYRIAD_X
from stylepipe.export.onnx import ExportError, check_model, deterministic_content, export_graph
from stylepipe.nn.functional import mean_std
from stylepipe.nn.statistics import StatsOrigin, StyleBank

DOC = "AdaIN style transfer (stylepipe): RGB float [0,1] NCHW in, RGB float [0,1] out"
STYLE_INPUT = "style_mean"  # the stats model's input whose shape [1, C, 1, 1] gives the statistics' channels


def export_engine(stylizer: AdaINStylizer, finish: Finish) -> Engine:
    """The engine the graphs trace: `stylizer` on the torch backend, on the CPU in float32, eager."""
    cpu = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)
    return torch_engine(stylizer.eval(), cpu, finish)


class StatsModel(nn.Module):
    """Export wrapper around a torch-backend engine: (content, style_mean [1,C,1,1], style_std [1,C,1,1]) ->
    stylized at alpha 1, where C is the channel count of the AdaIN layer (`origin`). The backend's encoder and
    decoder are this module's submodules (their weights are the graph's); the AdaIN blend and the finish are
    the engine's own steps. `stats_scale` > 1 computes the content's statistics in the FP16-safe form
    (`mean_std`'s scale: the same value, smaller squares on the Myriad X)."""

    def __init__(self, engine: Engine, stats_scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(engine.backend, TorchBackend):
            raise ExportError(f"the ONNX export traces the torch backend, not {engine.describe()}")
        self.engine, self.stats_scale, self.origin = engine, stats_scale, engine.origin
        self.encoder, self.decoder = engine.backend.encoder, engine.backend.decoder
        self.finish = engine.finish_settings

    def forward(
        self, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor
    ) -> torch.Tensor:
        feat = self.encoder.encode(content)
        target = self.engine.blend(feat, style_mean, style_std, 1.0, mean_std(feat, scale=self.stats_scale))
        return self.engine.finish(self.decoder(target), content)


class BakedModel(nn.Module):
    """Export wrapper with one style's statistics stored as constants: content -> stylized."""

    def __init__(self, stats: StatsModel, style_mean: torch.Tensor, style_std: torch.Tensor) -> None:
        super().__init__()
        self.stats = stats
        shape = (1, stats.origin.channels, 1, 1)
        self.register_buffer("style_mean", style_mean.reshape(shape).clone())
        self.register_buffer("style_std", style_std.reshape(shape).clone())

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.stats(content, self.style_mean, self.style_std)


def stats_model(params: Params, encoder_path: Path = paths.ENCODER,
                decoder_path: Path = paths.DECODER) -> StatsModel:
    """The stats graph's module for the trained weights, finished by params `finish`, with
    `export.stats_scale`."""
    stylizer = load_stylizer(encoder_path, decoder_path)
    return StatsModel(export_engine(stylizer, Finish.from_params(params)), params.export.stats_scale).eval()


def exported_origin(path: Path) -> StatsOrigin:
    """What an exported stats model takes: the channels of its style_mean input, the encoder and AdaIN
    layer from its metadata (None in graphs exported before the layer was recorded)."""
    model = onnx.load(str(path), load_external_data=False)
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    if STYLE_INPUT not in dims:
        raise ExportError(f"{path}: no {STYLE_INPUT!r} input (not a style-statistics model)")
    meta = {p.key: p.value for p in model.metadata_props}
    return StatsOrigin(math.prod(dims[STYLE_INPUT]), meta.get("encoder"), meta.get("adain_layer"))


def model_record(stats: StatsModel) -> dict[str, Any]:
    """The exported AdaIN architecture, for the graphs' metadata and the reports: the encoder, the AdaIN
    layer, the channels of the style statistics there, the decoder's width, the weight of the content's fine
    detail the graph restores, and whether its output is to be matched to the style bank's palette (on the
    host: the graph holds no sorting, which the Myriad X lacks)."""
    origin = stats.origin
    return {"encoder": origin.encoder, "adain_layer": origin.layer, "style_channels": origin.channels,
            "decoder_width": stats.decoder.width, "detail": stats.finish.detail, "palette": stats.finish.palette}


def run_export_onnx(
    params: Params,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
    bank_path: Path = paths.STYLE_BANK,
    out_dir: Path = paths.ONNX_DIR,
) -> dict[str, Any]:
    """Export adain_stats.onnx and adain_baked.onnx, check them, write out_dir/report.json."""
    cfg = params.export
    stats = stats_model(params, encoder_path, decoder_path)
    bank = StyleBank.load_trained(bank_path, stats.origin)
    names = bank.names
    if cfg.style_index >= len(names):
        raise ExportError(f"export.style_index={cfg.style_index} but {bank_path} holds {len(names)} styles")
    mean, std = (
        bank.mean[cfg.style_index : cfg.style_index + 1],
        bank.std[cfg.style_index : cfg.style_index + 1],
    )
    baked = BakedModel(stats, mean, std).eval()
    content = deterministic_content(cfg.height, cfg.width, params.common.seed)
    architecture = model_record(stats)
    meta = {
        "input_color_order": "RGB",
        "input_scale": "float32 in [0, 1]",
        "input_layout": "NCHW",
        "output": "stylized: RGB float32 in [0, 1], NCHW",
        "input_size": f"{cfg.height}x{cfg.width}",
        **{k: str(v) for k, v in architecture.items()},
        "style_names": json.dumps(names),
        "stats_scale": str(cfg.stats_scale),
    }
    plan = [
        (STATS_ONNX, stats, (content, mean, std), ["content", "style_mean", "style_std"], {}),
        (
            BAKED_ONNX,
            baked,
            (content,),
            ["content"],
            {"baked_style": names[cfg.style_index], "baked_style_index": str(cfg.style_index)},
        ),
    ]
    report: dict[str, Any] = {
        "atol": cfg.atol,
        "opset": cfg.opset,
        "height": cfg.height,
        "width": cfg.width,
        "style_names": names,
        "style_index": cfg.style_index,
        **architecture,
        "models": {},
    }
    with atomic_dir(out_dir) as tmp:
        for fname, module, args, inputs, extra in plan:
            export_graph(module, args, inputs, tmp / fname, cfg.opset, {**meta, **extra}, doc=DOC)
            report["models"][fname] = check_model(module, args, inputs, tmp / fname, cfg.atol, (MYRIAD_X,))
        write_json(tmp / "report.json", report)
    return report
