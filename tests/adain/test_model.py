"""AdaIN: the statistics it transfers, the decoder (plan, width, file format) and the stylizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylepipe.adain.model import AdaINStylizer, Decoder, decoder_plan, load_decoder, load_stylizer, save_decoder
from stylepipe.nn.encoders import TAP_CHANNELS, WeightsError, build_encoder
from stylepipe.nn.functional import adain, mean_std

from ..conftest import ADAIN_DEPTHS, depth_id


def test_adain_matches_style_statistics():
    torch.manual_seed(0)
    content = torch.rand(2, 8, 16, 16) * 3
    style = torch.rand(2, 8, 16, 16) * 7 + 2
    out = adain(content, *mean_std(style))
    o_mean, o_std = mean_std(out)
    s_mean, s_std = mean_std(style)
    assert torch.allclose(o_mean, s_mean, atol=1e-4)
    assert torch.allclose(o_std, s_std, atol=1e-3)


@pytest.mark.parametrize("layer", ["relu3_1", "relu4_1"])
@pytest.mark.parametrize("name", ["vgg16_hed", "vgg19"])
def test_decoder_inverts_encoder_shape(name, layer):
    enc, dec = build_encoder(name, layer), Decoder(name, layer)
    x = torch.rand(1, 3, 64, 40)
    feat = enc.encode(x)
    assert feat.shape == (1, TAP_CHANNELS[layer], 64 // enc.stride, 40 // enc.stride)
    assert enc.out_channels == dec.in_channels == TAP_CHANNELS[layer]
    assert dec(feat).shape == x.shape


def test_decoder_plan_mirrors_the_encoder():
    assert decoder_plan("vgg16_hed", "relu3_1") == [(256, 128), "U", (128, 128), (128, 64), "U", (64, 64), (64, 3)]
    assert decoder_plan("vgg16_hed", "relu4_1") == [
        (512, 256), "U", (256, 256), (256, 256), (256, 128), "U", (128, 128), (128, 64), "U", (64, 64), (64, 3)
    ]
    assert decoder_plan("vgg19", "relu3_1") == decoder_plan("vgg16_hed", "relu3_1")  # the same up to relu3_1
    assert len(decoder_plan("vgg19", "relu4_1")) == len(decoder_plan("vgg16_hed", "relu4_1")) + 1  # conv3_4


def _conv_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    return [(m.in_channels, m.out_channels) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_decoder_width_halves_the_hidden_channels():
    assert decoder_plan("vgg16_hed", "relu3_1", 0.5) == [(256, 64), "U", (64, 64), (64, 32), "U", (32, 32), (32, 3)]
    full, half = Decoder("vgg16_hed", "relu3_1"), Decoder("vgg16_hed", "relu3_1", 0.5)
    assert _conv_shapes(half) == [p for p in decoder_plan("vgg16_hed", "relu3_1", 0.5) if p != "U"]
    assert half.in_channels == full.in_channels == 256
    assert [o for _, o in _conv_shapes(half)][:-1] == [o // 2 for _, o in _conv_shapes(full)][:-1]
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in full.parameters()) / 2


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
def test_saved_decoder_round_trips_layer_and_width(tmp_path: Path, depth):
    layer, width = depth
    dec = Decoder("vgg16_hed", layer, width)
    dec.input_scale.fill_(0.25)
    save_decoder(dec, tmp_path / "decoder.pt")
    back = load_decoder(tmp_path / "decoder.pt")
    assert (back.encoder_name, back.layer, back.width, back.in_channels) == ("vgg16_hed", layer, width, dec.in_channels)
    assert float(back.input_scale) == 0.25
    assert all(torch.equal(a, b) for a, b in zip(dec.state_dict().values(), back.state_dict().values(), strict=True))


def test_decoder_file_of_the_older_format_loads_as_relu4_1_width_1(tmp_path: Path):
    dec = Decoder("vgg16_hed")
    state = {k: v for k, v in dec.state_dict().items() if k != "input_scale"}
    torch.save({"encoder": "vgg16_hed", "state_dict": state}, tmp_path / "old.pt")  # no layer, width, input_scale
    back = load_decoder(tmp_path / "old.pt")
    assert (back.layer, back.width, back.in_channels, float(back.input_scale)) == ("relu4_1", 1.0, 512, 1.0)
    x = torch.rand(1, 512, 4, 4)
    assert torch.equal(back(x), dec(x))


def test_decoder_of_another_layer_or_encoder_is_named(tmp_path: Path):
    save_decoder(Decoder("vgg16_hed", "relu3_1"), tmp_path / "decoder.pt")
    with pytest.raises(WeightsError, match=r"decoder was trained for encoder 'vgg16_hed' at relu3_1, but the "
                                           r"encoder is 'vgg16_hed' at relu4_1"):
        AdaINStylizer(build_encoder("vgg16_hed", "relu4_1"), load_decoder(tmp_path / "decoder.pt"))
    torch.save({"name": "vgg19", "state_dict": build_encoder("vgg19").state_dict()}, tmp_path / "enc19.pt")
    with pytest.raises(WeightsError, match=r"decoder\.pt with .*enc19\.pt: .*'vgg16_hed' at relu3_1, but the "
                                           r"encoder is 'vgg19' at relu3_1"):
        load_stylizer(tmp_path / "enc19.pt", tmp_path / "decoder.pt")


def test_load_stylizer_cuts_the_encoder_at_the_decoders_layer(tiny_models_at):
    enc, dec = tiny_models_at
    model = load_stylizer(enc, dec)
    assert model.encoder.last == model.layer == model.decoder.layer
    assert model.channels == model.encoder.out_channels == TAP_CHANNELS[model.layer]


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
def test_stylizer_alpha_zero_is_reconstruction_path(depth):
    torch.manual_seed(0)
    model = AdaINStylizer(build_encoder("vgg16_hed", depth[0]), Decoder("vgg16_hed", *depth)).eval()
    c, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    recon = model.decoder(model.encoder.encode(c))
    stats = model.style_stats(s)
    with torch.no_grad():
        assert torch.allclose(model(c, *stats, alpha=0.0), recon, atol=1e-5)
        assert not torch.allclose(model(c, *stats, alpha=1.0), recon, atol=1e-3)


def test_decoder_round_trip_and_mismatch(tmp_path: Path):
    dec = Decoder("vgg16_hed")
    save_decoder(dec, tmp_path / "decoder.pt")
    back = load_decoder(tmp_path / "decoder.pt")
    assert all(torch.equal(a, b) for a, b in zip(dec.state_dict().values(), back.state_dict().values(), strict=True))
    torch.save({"name": "vgg19", "state_dict": build_encoder("vgg19").state_dict()}, tmp_path / "enc19.pt")
    with pytest.raises(WeightsError, match="trained for encoder 'vgg16_hed'"):
        load_stylizer(tmp_path / "enc19.pt", tmp_path / "decoder.pt")
    with pytest.raises(WeightsError, match="decoder weights not found"):
        load_decoder(tmp_path / "nope.pt")


def test_decoder_file_holds_no_finishing_and_older_files_that_do_still_load(tmp_path: Path):
    """How outputs are finished is params `finish` (or a model folder's record), not the decoder file's: a
    saved decoder records none, and a file written when decoders recorded palette and detail loads the
    same network."""
    save_decoder(Decoder("vgg16_hed", "relu3_1", 0.5), tmp_path / "decoder.pt")
    blob = torch.load(tmp_path / "decoder.pt", weights_only=True)
    assert not {"palette", "detail"} & set(blob)
    torch.save({**blob, "palette": "histogram", "detail": 0.75}, tmp_path / "older.pt")
    older = load_decoder(tmp_path / "older.pt")
    assert (older.layer, older.width) == ("relu3_1", 0.5)
    assert all(torch.equal(older.state_dict()[k], v) for k, v in blob["state_dict"].items())


@pytest.mark.parametrize("channels_last", [False, True])
def test_decoder_upsampling_equals_nearest_interpolate(channels_last: bool):
    from stylepipe.nn.layers import upsample_nearest2x

    x = torch.randn(2, 5, 7, 9, requires_grad=True)
    xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    ours, ref = upsample_nearest2x(xx), torch.nn.functional.interpolate(xx, scale_factor=2.0, mode="nearest")
    assert torch.equal(ours, ref)
    assert ours.is_contiguous(memory_format=torch.channels_last) == channels_last
    grad = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, x, grad)[0], torch.autograd.grad(ref, x, grad)[0])
