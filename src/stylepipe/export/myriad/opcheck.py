"""Static check that an ONNX graph only uses operators the Myriad X (OAK-1) accepts, in the accepted form.

The check is conservative: an operator not on the allow-list is a violation, as are the known traps
(InstanceNormalization / eps inside the sqrt, non-nearest resizing, edge padding, dynamic input shapes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

ALLOWED_OPS = frozenset(
    {
        "Conv",
        "Relu",
        "MaxPool",
        "Pad",
        "Resize",
        "Upsample",
        "ReduceMean",
        "Sub",
        "Add",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Clip",
        "Constant",
        "Concat",
        "Reshape",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Cast",
        "Slice",
    }
)
PAD_MODES = frozenset({"reflect", "constant"})
NORM_OPS = frozenset({"InstanceNormalization", "MeanVarianceNormalization", "LayerNormalization"})


@dataclass
class OpReport:
    """Result of `check_graph`: op histogram and every violation found (empty = Myriad-compatible)."""

    ops: dict[str, int]
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "ops": dict(sorted(self.ops.items())), "violations": list(self.violations)}


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {init.name for init in graph.initializer}
    names.update(out for n in graph.node if n.op_type == "Constant" for out in n.output)
    return names


def _node_violation(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], consts: set[str]
) -> str | None:
    op, label = node.op_type, f"{node.op_type} node {node.name or node.output[0]!r}"
    if op in NORM_OPS:
        return f"{label}: normalisation op with eps inside the sqrt is not supported on Myriad X"
    if op not in ALLOWED_OPS:
        return f"{label}: operator not on the Myriad X allow-list"
    if node.domain not in ("", "ai.onnx"):
        return f"{label}: custom domain {node.domain!r}"
    if op == "Pad" and _attr(node, "mode", "constant") not in PAD_MODES:
        return f"{label}: pad mode {_attr(node, 'mode', 'constant')!r} (only reflect/constant)"
    if op in ("Resize", "Upsample") and _attr(node, "mode", "nearest") != "nearest":
        return f"{label}: mode {_attr(node, 'mode', 'nearest')!r} (only nearest upsampling)"
    if op == "Sqrt":
        src = producers.get(node.input[0])
        if src is not None and src.op_type in ("Add", "Sum") and any(i in consts for i in src.input):
            return f"{label}: sqrt(x + eps) fuses to MVN with eps inside the sqrt; use sqrt(x) + eps"
    return None


def _dynamic_inputs(graph: onnx.GraphProto) -> list[str]:
    out = []
    inits = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if not dims or any(not d.HasField("dim_value") for d in dims):
            out.append(f"input {inp.name!r}: shape is not static")
    return out


def check_graph(model: onnx.ModelProto | str | Path) -> OpReport:
    """Check every node of the main graph against the Myriad X allow-list and the required forms."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    producers = {out: n for n in graph.node for out in n.output}
    consts = _constant_names(graph)
    report = OpReport(ops=dict(Counter(n.op_type for n in graph.node)))
    for node in graph.node:
        if (msg := _node_violation(node, producers, consts)) is not None:
            report.violations.append(msg)
    report.violations += _dynamic_inputs(graph)
    return report
