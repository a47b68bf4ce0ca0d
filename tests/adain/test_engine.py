"""The AdaIN inference engine: one composition through the torch and OpenVINO backends (whole frames, tiles,
masks, any size), the IR's record of its weights, the precisions, and the steps video builds on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylepipe.adain.engine import Engine, Finish, FinishError, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.ir import IRError, OpenVINOBackend, check_source, quantize_ir, write_ir
from stylepipe.adain.model import AdaINStylizer, Decoder
from stylepipe.adain.stylize import AdaINStylize, StylizeOptions
from stylepipe.core.runtime import Runtime
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.palette import palette_of
from stylepipe.nn.statistics import StatsOrigin

CPU = Runtime(torch.device("cpu"), bf16=False, channels_last=False, compile=False)
SOURCE = {"encoder_sha256": "e" * 64, "decoder_sha256": "d" * 64}


def smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h, w), mode="bilinear").clamp(0, 1)


@pytest.fixture(scope="module")
def model() -> AdaINStylizer:
    torch.manual_seed(0)
    return AdaINStylizer(build_encoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)).eval()


@pytest.fixture(scope="module")
def ir_dir(model, tmp_path_factory) -> Path:
    return write_ir(model.encoder, model.decoder, tmp_path_factory.mktemp("ir"), SOURCE)[0].parent


@pytest.fixture(scope="module")
def engines(model, ir_dir) -> dict[str, Engine]:
    finish = Finish("histogram", 1.0)
    openvino = Engine(OpenVINOBackend(ir_dir, "f32"), StatsOrigin.of(model), model.encoder.stride, finish)
    return {"torch": torch_engine(model, CPU, finish), "openvino": openvino}


def _style(engine: Engine, seed: int) -> StyleTarget:
    image = smooth(32, 32, seed)
    return StyleTarget(*engine.style_stats(image), palette_of(image[0])[None])


def test_openvino_f32_equals_torch_for_frames_of_any_size(engines):
    style = _style(engines["torch"], 1)
    for h, w in ((32, 32), (48, 72)):
        content = smooth(h, w, 2)
        for alpha in (1.0, 0.6):
            a, b = (engines[k].frame(content, style, alpha) for k in ("torch", "openvino"))
            assert a.shape == (1, 3, h, w)
            assert (a - b).abs().max() < 1e-4, (h, w, alpha)


def test_tiles_and_masks_agree_through_both_backends(engines, tmp_path):
    style_a, style_b = _style(engines["torch"], 3), _style(engines["torch"], 4)
    stats = engines["torch"].style_bank(["a", "b"], [smooth(32, 32, 3)[0], smooth(32, 32, 4)[0]])
    half = np.zeros((48, 64), np.uint8)
    half[:, :32] = 255
    Image.fromarray(half).save(tmp_path / "half.png")
    content = smooth(48, 64, 5)
    for options in (StylizeOptions(weights=[1, 0], tile=32, tile_overlap=8, tile_context=16),
                    StylizeOptions(mask=tmp_path / "half.png", tile=0)):
        torch_out, ov_out = (AdaINStylize(engines[k], options, stats=stats)(content) for k in ("torch", "openvino"))
        assert (torch_out - ov_out).abs().max() < 1e-4
    whole = engines["openvino"].frame(content, style_a)
    tiled = AdaINStylize(engines["openvino"], StylizeOptions(weights=[1, 0], tile=32, tile_overlap=8,
                                                             tile_context=16), stats=stats)(content)
    assert (whole - tiled).abs().max() < 2e-2  # tiles see the whole frame's statistics
    assert not torch.allclose(whole, engines["openvino"].frame(content, style_b), atol=1e-2)


def test_steps_compose_to_the_frame_and_a_palette_map_can_be_reused(engines):
    engine, style = engines["torch"], _style(engines["torch"], 6)
    content = smooth(40, 40, 7)
    feat = engine.encode(content)
    stats = engine.content_stats(feat)
    decoded = engine.decode(engine.blend(feat, style.mean, style.std, 0.8, stats))
    unmatched = engine.with_finish(Finish("none", 1.0)).finish(decoded, content)
    mapping = engine.palette_map(unmatched, style.palette)
    stepwise = engine.finish(decoded, content, palette_map=mapping, strength=0.8)
    assert torch.allclose(stepwise, engine.frame(content, style, 0.8), atol=1e-6)
    assert (palette_of(engine.finish(decoded, content, palette_map=mapping)[0]) - style.palette[0]).abs().mean() < 0.02


def test_an_ir_from_other_weights_or_a_missing_one_is_refused(ir_dir, tmp_path):
    check_source(ir_dir, SOURCE)
    with pytest.raises(IRError, match=r"encoder\.xml: made from other weights"):
        check_source(ir_dir, {**SOURCE, "decoder_sha256": "0" * 64})
    with pytest.raises(IRError, match=r"encoder\.xml: OpenVINO IR file not found"):
        OpenVINOBackend(tmp_path)
    with pytest.raises(IRError, match=r"precision 'fp8' is not supported: expected one of"):
        OpenVINOBackend(ir_dir, "fp8")


def test_int8_quantised_ir_keeps_its_record_and_stays_close(model, ir_dir, engines, tmp_path):
    contents = [smooth(32, 32, s) for s in range(4)]
    targets = [model.encoder.encode(c).detach() for c in contents]
    int8_dir = quantize_ir(ir_dir, tmp_path / "int8", contents, targets)[0].parent
    check_source(int8_dir, SOURCE)
    int8 = Engine(OpenVINOBackend(int8_dir, "int8"), StatsOrigin.of(model), 4, Finish("none", 1.0))
    style, content = _style(engines["torch"], 8), smooth(32, 32, 9)
    reference = engines["torch"].with_finish(Finish("none", 1.0)).frame(content, style)
    assert (int8.frame(content, style) - reference).abs().mean() < 0.05


def test_finishing_settings_are_validated():
    with pytest.raises(FinishError, match=r"palette 'lab' is not supported"):
        Finish("lab")  # type: ignore[arg-type]
    with pytest.raises(FinishError, match=r"detail 2 is not supported: expected a number in 0\.\.1"):
        Finish("none", 2)


def test_finish_comes_from_the_params_finish_section_and_overrides_replace_it():
    """Stages build their Finish from params `finish`; a CLI flag overrides one setting of it and keeps the
    other, giving a new Finish (the original is unchanged)."""
    from stylepipe.core.config import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    changed = params.model_copy(update={"finish": params.finish.model_copy(update={"palette": "none",
                                                                                   "detail": 0.25})})
    finish = Finish.from_params(changed)
    assert finish == Finish("none", 0.25)
    assert finish.overridden(detail=0.0) == Finish("none", 0.0)
    assert finish.overridden(palette="histogram") == Finish("histogram", 0.25)
    assert finish.overridden() == finish == Finish("none", 0.25)
    with pytest.raises(FinishError, match=r"detail 1\.5 is not supported"):
        finish.overridden(detail=1.5)


def test_engine_restores_the_fine_detail_its_finish_names(model):
    """`detail` of the content's fine luminance detail restored on the decoded image, then clamped."""
    from stylepipe.nn.detail import restore_fine_detail

    content, decoded = smooth(32, 32, 3), smooth(32, 32, 4) * 1.4 - 0.2
    for detail in (0.0, 0.75):
        out = torch_engine(model, CPU, Finish("none", detail)).finish(decoded, content)
        assert torch.allclose(out, restore_fine_detail(decoded, content, detail).clamp(0, 1))
    assert not torch.allclose(torch_engine(model, CPU, Finish("none", 0.75)).finish(decoded, content),
                              decoded.clamp(0, 1))


def test_engine_stylize_matches_the_style_image_palette_with_strength_alpha(model):
    """`Engine.stylize` takes a style image: its statistics and, when the settings match palettes, its
    palette; at alpha 0 the output is the reconstruction finished without palette matching."""
    content, style = smooth(32, 32, 5), smooth(32, 32, 6) * torch.tensor([1.0, 0.3, 0.1])[:, None, None]
    matched = torch_engine(model, CPU, Finish("histogram", 1.0))
    plain = matched.with_finish(Finish("none", 1.0))
    assert (palette_of(matched.stylize(content, style)[0]) - palette_of(style[0])).abs().mean() < 0.02
    assert (palette_of(plain.stylize(content, style)[0]) - palette_of(style[0])).abs().mean() > 0.05
    assert torch.allclose(matched.stylize(content, style, 0.0), plain.stylize(content, style, 0.0))
