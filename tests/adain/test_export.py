"""export_onnx / export_openvino on a tiny random AdaIN network, and the Myriad X operator check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import TensorProto, helper
from torch import nn

from stylepipe.adain.export import exported_origin, run_export_onnx
from stylepipe.adain.openvino import run_export_openvino
from stylepipe.core.config import Params, deep_merge, parse_params
from stylepipe.core.paths import BAKED_ONNX, STATS_ONNX
from stylepipe.export.myriad.opcheck import check_graph
from stylepipe.export.onnx import ExportError
from stylepipe.export.openvino import check_fp16_range
from stylepipe.nn.encoders import TAP_CHANNELS
from stylepipe.nn.functional import adain
from stylepipe.nn.statistics import StatsOrigin, StyleBank, StyleBankError

from ..conftest import ADAIN_DEPTHS, depth_id, save_tiny_models

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


def make_params(**export: Any) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = {"export": {"height": SIZE, "width": SIZE, "style_index": 1, "speed_repeats": 1, **export}}
    return parse_params(deep_merge(raw, over))


def save_bank(path: Path, channels: int, **recorded: str) -> Path:
    """Two random styles' statistics of `channels` channels; `recorded`: encoder and/or layer keys."""
    g = torch.Generator().manual_seed(0)
    mean, std = torch.rand(2, channels, 1, 1, generator=g), torch.rand(2, channels, 1, 1, generator=g) + 0.5
    torch.save({"names": ["ink", "oil"], "mean": mean, "std": std, **recorded}, path)
    return path


@pytest.fixture(scope="module", params=ADAIN_DEPTHS, ids=depth_id)
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Untrained models at one AdaIN depth and a style bank of that layer, as train_adain writes it."""
    layer, width = request.param
    d = tmp_path_factory.mktemp("weights")
    encoder, decoder = save_tiny_models(d, layer, width)
    bank = save_bank(d / "bank.pt", TAP_CHANNELS[layer], encoder="vgg16_hed", layer=layer)
    return {"encoder_path": encoder, "decoder_path": decoder, "bank_path": bank}


def depth_of(weights: dict[str, Any]) -> tuple[str, float, int]:
    """(layer, width, channels) of the weights fixture's decoder."""
    blob = torch.load(weights["decoder_path"], weights_only=True)
    return blob["layer"], blob["width"], TAP_CHANNELS[blob["layer"]]


@pytest.fixture(scope="module")
def exported(weights: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "onnx"
    return out, run_export_onnx(make_params(), out_dir=out, **weights)


def test_onnx_export_parity_inputs_metadata(weights: dict[str, Path], exported: tuple[Path, dict]) -> None:
    out, report = exported
    layer, width, channels = depth_of(weights)
    assert json.loads((out / "report.json").read_text()) == report
    assert (report["adain_layer"], report["decoder_width"], report["style_channels"]) == (layer, width, channels)
    assert report["encoder"] == "vgg16_hed" and report["detail"] == 1.0  # the fine-detail step is in the graphs
    for name in (STATS_ONNX, BAKED_ONNX):
        entry = report["models"][name]
        assert entry["max_abs_diff"] <= report["atol"]
        assert entry["opcheck"]["ok"] and entry["opcheck"]["violations"] == []
        assert entry["gmac"] > 0 and entry["params"] > 0
        proj = entry["oak1_projection"]
        assert proj["fps"] == pytest.approx(108.3 / entry["gmac"], rel=0.01)
        assert proj["fps_optimistic"] > proj["fps"] and "docs.luxonis.com" in proj["source"]
        onnx.checker.check_model(str(out / name))
    baked = onnx.load(str(out / BAKED_ONNX))
    assert [i.name for i in baked.graph.input] == ["content"]
    dims = [d.dim_value for d in baked.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, SIZE, SIZE]
    meta = {p.key: p.value for p in baked.metadata_props}
    assert meta["input_color_order"] == "RGB" and meta["input_layout"] == "NCHW"
    assert "[0, 1]" in meta["input_scale"] and json.loads(meta["style_names"]) == ["ink", "oil"]
    assert meta["baked_style"] == "oil"
    assert (meta["adain_layer"], meta["decoder_width"], meta["style_channels"]) == (layer, str(width), str(channels))
    stats = onnx.load(str(out / STATS_ONNX))
    assert [i.name for i in stats.graph.input] == ["content", "style_mean", "style_std"]
    for inp in stats.graph.input[1:]:
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, channels, 1, 1]
    assert exported_origin(out / STATS_ONNX) == StatsOrigin(channels, "vgg16_hed", layer)


def test_the_graphs_compute_what_the_engine_computes(weights: dict[str, Path], exported: tuple[Path, dict]) -> None:
    """Both graphs are traced from the torch engine that stylize runs: ONNX Runtime's output equals that
    engine's frame (palette left to the host) for a bank style, and no identity Cast of the tracer is left."""
    import onnxruntime as ort

    from stylepipe.adain.engine import Finish, StyleTarget
    from stylepipe.adain.fast import torch_engine
    from stylepipe.adain.model import load_stylizer
    from stylepipe.core.runtime import Runtime

    out, report = exported
    params = make_params()
    cpu = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)
    model = load_stylizer(weights["encoder_path"], weights["decoder_path"])
    engine = torch_engine(model, cpu, Finish.from_params(params))
    bank = StyleBank.load(weights["bank_path"])
    content = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    mean, std = bank.mean[1:2], bank.std[1:2]  # style_index 1: the baked one
    expected = engine.frame(content, StyleTarget(mean, std)).numpy()
    feeds = {STATS_ONNX: {"content": content.numpy(), "style_mean": mean.numpy(), "style_std": std.numpy()},
             BAKED_ONNX: {"content": content.numpy()}}
    for name, feed in feeds.items():
        got = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"]).run(None, feed)[0]
        assert np.abs(got - expected).max() <= report["atol"], name
        assert "Cast" not in {n.op_type for n in onnx.load(str(out / name)).graph.node}


def test_the_export_traces_only_the_torch_backend(weights: dict[str, Path]) -> None:
    from types import SimpleNamespace

    from stylepipe.adain.engine import Engine, Finish
    from stylepipe.adain.export import StatsModel, export_engine
    from stylepipe.adain.model import load_stylizer

    engine = export_engine(load_stylizer(weights["encoder_path"], weights["decoder_path"]), Finish())
    model = StatsModel(engine)
    assert model.encoder is engine.backend.encoder and model.decoder is engine.backend.decoder
    ir = SimpleNamespace(name="openvino", precision="f32", device=torch.device("cpu"))
    with pytest.raises(ExportError, match=r"traces the torch backend, not openvino \(f32, cpu\)"):
        StatsModel(Engine(ir, engine.origin, engine.stride, Finish()))


def test_a_style_bank_must_fit_the_model(weights: dict[str, Path], tmp_path: Path) -> None:
    """Statistics of the other layer (recorded, or only told by their channel count), of another encoder,
    or recorded at a layer their shape contradicts, are refused naming the file and both sides."""
    layer, _, channels = depth_of(weights)
    other = next(name for name, _ in ADAIN_DEPTHS if name != layer)
    model = StatsOrigin(channels, "vgg16_hed", layer)
    cases = [
        (save_bank(tmp_path / "deeper.pt", TAP_CHANNELS[other], encoder="vgg16_hed", layer=other),
         rf"deeper\.pt: style statistics of encoder 'vgg16_hed' at {other}, {TAP_CHANNELS[other]} channels, "
         rf"but the model takes encoder 'vgg16_hed' at {layer}, {channels} channels"),
        (save_bank(tmp_path / "old.pt", TAP_CHANNELS[other]),
         rf"old\.pt: style statistics of {TAP_CHANNELS[other]} channels, but the model takes .* at {layer}"),
        (save_bank(tmp_path / "vgg19.pt", channels, encoder="vgg19", layer=layer),
         rf"vgg19\.pt: style statistics of encoder 'vgg19' at {layer}, .* the model takes encoder 'vgg16_hed'"),
        (save_bank(tmp_path / "mislabelled.pt", channels, layer=other), rf"at {other}, .* at {layer}"),
    ]  # fmt: skip
    for path, message in cases:
        with pytest.raises(StyleBankError, match=message):
            StyleBank.load_trained(path, model)
    assert StyleBank.load_trained(save_bank(tmp_path / "legacy.pt", channels), model).names == ["ink", "oil"]
    with pytest.raises(StyleBankError, match=r"deeper\.pt: .* at " + layer):
        run_export_onnx(make_params(), weights["encoder_path"], weights["decoder_path"], tmp_path / "deeper.pt",
                        tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_parity_failure_is_clear(weights: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"differs from PyTorch by .* > export\.atol"):
        run_export_onnx(make_params(atol=1e-12), out_dir=tmp_path / "onnx", **weights)
    assert not (tmp_path / "onnx").exists()


def test_scaled_adain_is_the_same_maths() -> None:
    torch.manual_seed(1)
    feat, mean, std = torch.rand(1, 8, 4, 4) * 100, torch.rand(1, 8, 1, 1), torch.rand(1, 8, 1, 1)
    torch.testing.assert_close(
        adain(feat, mean, std, scale=16.0), adain(feat, mean, std), rtol=1e-5, atol=1e-5
    )


def _graph(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "crafted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_opcheck_flags_unsupported_forms() -> None:
    scale = helper.make_tensor("s", TensorProto.FLOAT, [3], [1.0] * 3)
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0] * 3)
    inorm = _graph([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])], [scale, bias])
    assert any("InstanceNormalization" in v and "eps inside" in v for v in check_graph(inorm).violations)
    scales = helper.make_tensor("sc", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    linear = _graph([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")], [scales])
    assert any("linear" in v for v in check_graph(linear).violations)
    assert check_graph(
        _graph([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest")], [scales])
    ).ok
    eps = helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-5])
    inside = _graph(
        [helper.make_node("Add", ["x", "eps"], ["v"]), helper.make_node("Sqrt", ["v"], ["y"])], [eps]
    )
    assert any("eps inside the sqrt" in v for v in check_graph(inside).violations)
    unknown = _graph([helper.make_node("Softplus", ["x"], ["y"])])
    assert any("allow-list" in v for v in check_graph(unknown).violations)
    pads = helper.make_tensor("p", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    edge = _graph([helper.make_node("Pad", ["x", "p"], ["y"], mode="edge")], [pads])
    assert any("edge" in v for v in check_graph(edge).violations)


def test_openvino_ir_fp16_matches_ort(
    weights: dict[str, Path], exported: tuple[Path, dict], tmp_path: Path
) -> None:
    onnx_dir, _ = exported
    # stats_scale 1: the tiny untrained models' feature deviations are small, and divided by the sample
    # profile's 4 their squares fall below FP16's normal range, an error no trained model shows
    report = run_export_openvino(make_params(stats_scale=1.0), onnx_dir, tmp_path / "ov", **weights)
    assert json.loads((tmp_path / "ov" / "report.json").read_text()) == report
    assert (report["adain_layer"], report["decoder_width"], report["style_channels"]) == depth_of(weights)
    assert report["fp16_range"]["ok"]
    for name in (STATS_ONNX, BAKED_ONNX):
        entry = report["models"][name]
        assert entry["max_abs_diff_vs_ort"] <= report["openvino_atol"]
        assert entry["constant_types"].get("f16", 0) > 0
        assert entry["cpu_fps"]["f32"] > 0
        assert (tmp_path / "ov" / entry["xml"]).is_file()
    fp16 = report["fp16_compute_error"]
    assert 0 < fp16["mean_abs_diff"] <= fp16["max_abs_diff"] < 0.1


class Loud(nn.Module):
    """A crafted network whose activations exceed the FP16 range."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        nn.init.constant_(self.conv.weight, 3e4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_fp16_overflow_check_fires() -> None:
    x = torch.ones(1, 3, 4, 4)
    with pytest.raises(ExportError, match="FP16 overflow"):
        check_fp16_range(Loud(), [(x,)])
    assert check_fp16_range(Loud(), [(x * 1e-3,)])["ok"]


def test_fp16_check_sees_adain_squared_deviation(weights: dict[str, Path]) -> None:
    from stylepipe.adain.export import stats_model

    model = stats_model(make_params(stats_scale=1.0), weights["encoder_path"], weights["decoder_path"])
    with torch.no_grad():
        conv = model.encoder.conv_layers()[-1]
        conv.weight.mul_(5000.0)  # the AdaIN layer large: squared deviations overflow although activations fit
    channels = model.origin.channels
    args = (torch.rand(1, 3, SIZE, SIZE), torch.zeros(1, channels, 1, 1), torch.ones(1, channels, 1, 1))
    with pytest.raises(ExportError, match="squared deviation"):
        check_fp16_range(model, [args])
    rng = check_fp16_range(model, [args], stats_scale=64.0)
    assert rng["max_abs_activation"] < 65504 and np.isfinite(rng["headroom"])


def test_projection_constants_are_the_reference_networks_macs() -> None:
    """The cited FPS x GMAC: recount torchvision's ResNets' convolution MACs at 224x224."""
    import torchvision

    from stylepipe.export.myriad.projection import RESNET18, RESNET50, oak_projection, projected_oak_fps
    from stylepipe.export.onnx import count_macs

    x = torch.zeros(1, 3, 224, 224)
    for ref, build in ((RESNET50, torchvision.models.resnet50), (RESNET18, torchvision.models.resnet18)):
        macs, _ = count_macs(build().eval(), (x,))
        assert macs / 1e9 == pytest.approx(ref.gmac, abs=1e-3)
    # the cited effective throughputs (26.5 x 4.087 and 94.8 x 1.814 GMAC/s), as written in the docstring
    assert projected_oak_fps(1.0) == pytest.approx(108.3, abs=0.05)
    assert projected_oak_fps(1.0, RESNET18) == pytest.approx(172.0, abs=0.05)
    assert projected_oak_fps(4.087 * 2) == pytest.approx(26.5 / 2, rel=1e-3)  # twice the work, half the rate
    johnson_256 = oak_projection(11.378)  # TransformerNet, pad 8, 256x256
    assert 9 < johnson_256["fps"] < 10 and not johnson_256["meets_target"]
    assert oak_projection(2.9)["meets_target"]
    with pytest.raises(ValueError, match="positive"):
        projected_oak_fps(0.0)
