"""Any network to ONNX and back: export, constant folding, ONNX Runtime, and the check every exported
model passes (parity with PyTorch, size, compute, and each device target's own check).

The TorchScript exporter is used (opset 11-13, static size) and constant sub-graphs are folded, so the
graph is plain ONNX that accelerator compilers accept. No device is named here: a target (the Myriad X
in `stylepipe.export.myriad.target`) plugs in as a `GraphTarget` passed to `check_model`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from stylepipe.core.errors import StylepipeError
from stylepipe.core.io import file_digest


class ExportError(StylepipeError, RuntimeError):
    """An export stage failed a check (parity, operator support, FP16 range) or lacks an input."""


class GraphTarget(Protocol):
    """A device the exported graphs must run on: it checks each graph and adds its figures to the report."""

    name: str

    def check(self, path: Path, gmac: float) -> dict[str, Any]:
        """Report entries for the graph at `path` (`gmac` per frame); ExportError when the device cannot run it."""
        ...


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


def drop_identity_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove every Cast to the type its input already has (the tracer records each `.to(...)` of a
    caller's dtype-agnostic code as one), rewiring its consumers to the input; a graph output stays."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    outputs = {o.name for o in graph.output}
    source: dict[str, str] = {}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = source.get(name, name)
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and node.output[0] not in outputs and types.get(node.input[0]) == to:
            source[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def export_graph(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    opset: int,
    metadata: dict[str, str],
    doc: str = "style transfer (stylepipe): RGB float [0,1] NCHW in, RGB float [0,1] out",
) -> onnx.ModelProto:
    """TorchScript export, constant folding, identity casts dropped, metadata, onnx.checker; returns the saved
    model."""
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
    model = drop_identity_casts(fold_constants(onnx.load(str(path))))
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


def check_model(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    atol: float,
    targets: Sequence[GraphTarget] = (),
) -> dict[str, Any]:
    """Parity vs PyTorch, size and compute figures for one model, then each target's check and figures."""
    with torch.no_grad():
        ref = module(*args).numpy()
    got = ort_run(path, {n: a.numpy() for n, a in zip(names, args, strict=True)})
    diff = float(np.abs(ref - got).max())
    if not diff <= atol:
        raise ExportError(
            f"{path.name}: ONNX Runtime output differs from PyTorch by {diff:.3g} > export.atol={atol:g}"
        )
    macs, n_params = count_macs(module, args)
    report: dict[str, Any] = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": file_digest(path),
        "inputs": names,
        "max_abs_diff": diff,
        "gmac": round(macs / 1e9, 3),
        "params": n_params,
    }
    for target in targets:
        report.update(target.check(path, macs / 1e9))
    return report


