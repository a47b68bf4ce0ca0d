"""The `export_onnx` stage: AdaIN to ONNX (style statistics as inputs, and one style baked in).

Both graphs take `content` [1, 3, H, W] float32 RGB in [0, 1] (NCHW) and return `stylized` in [0, 1].
The TorchScript exporter is used (opset 11-13, static size), constant sub-graphs are folded so the
graph is plain Myriad-friendly ONNX, and each model is checked against PyTorch with ONNX Runtime.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.errors import StylepipeError
from stylepipe.core.io import atomic_dir, file_digest, write_json
from stylepipe.export.opcheck import check_graph
from stylepipe.export.projection import oak_projection
from stylepipe.models.adain import AdaINStylizer, load_stylizer
from stylepipe.models.functional import adain
from stylepipe.models.statistics import StatsOrigin, StyleBank

STATS_ONNX = "adain_stats.onnx"
BAKED_ONNX = "adain_baked.onnx"
STYLE_INPUT = "style_mean"  # the stats model's input whose shape [1, C, 1, 1] gives the statistics' channels


class ExportError(StylepipeError, RuntimeError):
    """An export stage failed a check (parity, operator support, FP16 range) or lacks an input."""


class StatsModel(nn.Module):
    """Export wrapper: (content, style_mean [1,C,1,1], style_std [1,C,1,1]) -> stylized, alpha = 1, where C
    is the channel count of the AdaIN layer (`origin`)."""

    def __init__(self, stylizer: AdaINStylizer, stats_scale: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.stats_scale = stylizer.encoder, stylizer.decoder, stats_scale
        self.origin = StatsOrigin.of(stylizer)

    def forward(
        self, content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor
    ) -> torch.Tensor:
        feat = self.encoder.encode(content)
        return self.decoder(adain(feat, style_mean, style_std, self.stats_scale)).clamp(0.0, 1.0)


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


def exported_origin(path: Path) -> StatsOrigin:
    """What an exported stats model takes: the channels of its style_mean input, the encoder and AdaIN
    layer from its metadata (None in graphs exported before the layer was recorded)."""
    model = onnx.load(str(path), load_external_data=False)
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    if STYLE_INPUT not in dims:
        raise ExportError(f"{path}: no {STYLE_INPUT!r} input (not a style-statistics model)")
    meta = {p.key: p.value for p in model.metadata_props}
    return StatsOrigin(math.prod(dims[STYLE_INPUT]), meta.get("encoder"), meta.get("adain_layer"))


def deterministic_content(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A fixed test image: a smooth colour gradient plus seeded noise, RGB in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([xx, yy, 1 - (xx + yy) / 2])[None]
    return (0.7 * base + 0.3 * torch.rand(1, 3, height, width, generator=gen)).clamp(0, 1)


def _fold_node(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Evaluate one node whose inputs are all known constants."""
    if node.op_type == "Constant":
        return [numpy_helper.to_array(onnx.helper.get_attribute_value(node.attribute[0]))]
    inputs = [n for n in node.input if n]
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [
            onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(values[n].dtype), None)
            for n in inputs
        ],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(model).run(None, {n: values[n] for n in inputs}))


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node computable from constants (e.g. reflect-pad amounts) by an initializer."""
    graph, opset = model.graph, model.opset_import[0].version
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "Shape" and all(not n or n in values for n in node.input):
            for name, arr in zip(node.output, _fold_node(node, values, opset), strict=True):
                values[name] = np.asarray(arr)
        else:
            kept.append(node)
    used = {n for node in kept for n in node.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k in used)
    return model


def export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    opset: int,
    metadata: dict[str, str],
    doc: str = "AdaIN style transfer (stylepipe): RGB float [0,1] NCHW in, RGB float [0,1] out",
) -> onnx.ModelProto:
    """TorchScript export, constant folding, metadata, onnx.checker; returns the saved model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["stylized"],
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = fold_constants(onnx.load(str(path)))
    model.doc_string = doc
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def count_macs(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """(multiply-accumulates of all convolutions for one forward, parameter count)."""
    macs = 0

    def hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        k = m.in_channels // m.groups * math.prod(m.kernel_size)
        macs += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for h in handles:
            h.remove()
    return macs, sum(p.numel() for p in module.parameters())


def ort_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU, warnings silenced."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run an ONNX model on the CPU with ONNX Runtime; returns the first output."""
    return ort_session(path).run(None, feeds)[0]


def _check_one(
    module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], path: Path, atol: float
) -> dict[str, Any]:
    """Parity vs PyTorch, operator check, size, compute figures and projected OAK-1 FPS for one model."""
    with torch.no_grad():
        ref = module(*args).numpy()
    got = ort_run(path, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    diff = float(np.abs(ref - got).max())
    if not diff <= atol:
        raise ExportError(
            f"{path.name}: ONNX Runtime output differs from PyTorch by {diff:.3g} > export.atol={atol:g}"
        )
    ops = check_graph(path)
    if not ops.ok:
        raise ExportError(f"{path.name}: not Myriad X compatible:\n  " + "\n  ".join(ops.violations))
    macs, n_params = count_macs(module, args)
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": file_digest(path),
        "inputs": names,
        "max_abs_diff": diff,
        "gmac": round(macs / 1e9, 3),
        "params": n_params,
        "oak1_projection": oak_projection(macs / 1e9),
        "opcheck": ops.to_dict(),
    }


def model_record(stats: StatsModel) -> dict[str, Any]:
    """The exported AdaIN architecture, for the graphs' metadata and the reports: the encoder, the AdaIN
    layer, the channels of the style statistics there, and the decoder's width."""
    origin = stats.origin
    return {"encoder": origin.encoder, "adain_layer": origin.layer, "style_channels": origin.channels,
            "decoder_width": stats.decoder.width}


def run_export_onnx(
    params: Params,
    encoder_path: Path = paths.ENCODER,
    decoder_path: Path = paths.DECODER,
    bank_path: Path = paths.STYLE_BANK,
    out_dir: Path = paths.ONNX_DIR,
) -> dict[str, Any]:
    """Export adain_stats.onnx and adain_baked.onnx, check them, write out_dir/report.json."""
    cfg = params.export
    stats = StatsModel(load_stylizer(encoder_path, decoder_path), cfg.stats_scale).eval()
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
            export_graph(module, args, inputs, tmp / fname, cfg.opset, {**meta, **extra})
            report["models"][fname] = _check_one(module, args, inputs, tmp / fname, cfg.atol)
        write_json(tmp / "report.json", report)
    return report
