"""Gatys optimisation: ReLU naming, hooks, loss decrease (random and real encoder), CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylepipe.cli import main
from stylepipe.gatys.optimise import FeatureExtractor, GatysError, GatysOptions, run_gatys
from stylepipe.nn.encoders import TAPS, build_encoder, relu_names
from stylepipe.nn.losses import gram_loss
from stylepipe.nn.weights import wheel_state_dict

ROOT = Path(__file__).resolve().parents[2]
VGG16_RELUS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1"]


def _images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth content image and a high-frequency style image, deterministic."""
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, size)
    content = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                           torch.full((size, size), 0.4)])
    content = (content + 0.05 * torch.randn(3, size, size, generator=gen)).clamp(0, 1)
    style = torch.rand(3, size, size, generator=gen).round()
    return content, style


@pytest.fixture(scope="module")
def random_encoder():
    torch.manual_seed(0)
    return build_encoder("vgg16_hed")


def test_relu_names_follow_blocks():
    assert list(relu_names(build_encoder("vgg16_hed"))) == VGG16_RELUS
    vgg19 = list(relu_names(build_encoder("vgg19")))
    assert "relu3_4" in vgg19 and vgg19[-1] == "relu4_1" and len(vgg19) == 9
    assert "relu3_4" not in VGG16_RELUS
    assert list(relu_names(build_encoder("vgg19_bn"))) == vgg19  # BatchNorm does not shift the names


def test_unknown_layer_is_named_with_the_available_ones(random_encoder):
    with pytest.raises(GatysError, match=r"unknown layer 'relu5_1'.*available: relu1_1, relu1_2"):
        FeatureExtractor(random_encoder, ["relu1_1", "relu5_1"])
    content, style = _images(16)
    with pytest.raises(GatysError, match="relu3_4"):
        run_gatys(random_encoder, content, style, GatysOptions(style_layers=["relu3_4"], iterations=1),
                  progress=False)


def test_hooks_match_forward_taps_and_are_removed():
    torch.manual_seed(1)
    for name in ("vgg16_hed", "vgg19_bn"):
        enc = build_encoder(name)
        x = torch.rand(1, 3, 24, 24)
        with FeatureExtractor(enc, list(TAPS)) as extract:
            hooked = extract(x)
        taps = enc(x)
        assert set(hooked) == set(TAPS)
        assert all(torch.equal(hooked[k], taps[k]) for k in TAPS)
        assert all(not m._forward_hooks for m in enc.layers)
        with FeatureExtractor(enc, ["relu2_2"]) as extract:  # stops early, deeper layers not computed
            assert list(extract(x)) == ["relu2_2"]


def test_style_term_is_losses_gram_loss(random_encoder):
    content, style = _images()
    opts = GatysOptions(iterations=1, style_weight=3.0, content_weight=0.0)
    first = run_gatys(random_encoder, content, style, opts, progress=False).history[0]
    with torch.no_grad():
        expected = 3.0 * gram_loss(random_encoder(content[None]), random_encoder(style[None]), TAPS)
    assert first["style"] == pytest.approx(expected.item(), rel=1e-5)
    assert first["content"] == 0.0  # init = content


def _stripes(size: int = 32) -> torch.Tensor:
    """A style the real VGG16 picks up within a few steps from a smooth content start (random noise is slow)."""
    i = torch.arange(size)
    return torch.stack([(i % 4 < 2).float()[None, :].expand(size, size), torch.full((size, size), 0.2),
                        (i % 6 < 3).float()[:, None].expand(size, size)])


def _assert_lowers(encoder, opts: GatysOptions, factor: float, style: torch.Tensor | None = None) -> None:
    content, noise_style = _images()
    style = noise_style if style is None else style
    result = run_gatys(encoder, content, style, opts, progress=False)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == opts.iterations
    assert losses[-1] < factor * losses[0], losses
    assert result.image.shape == content.shape
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0


def test_lbfgs_lowers_loss_random_encoder(random_encoder):
    _assert_lowers(random_encoder, GatysOptions(iterations=15, style_weight=1e3), 0.5)


def test_lbfgs_lowers_loss_real_weights():
    enc = build_encoder("vgg16_hed", "relu4_3")  # the .h5 gives all of block 4
    enc.load_state_dict(wheel_state_dict("vgg16_hed"))
    _assert_lowers(enc, GatysOptions(iterations=15, style_weight=1e-2), 0.6, style=_stripes())


def test_adam_lowers_loss(random_encoder):
    _assert_lowers(random_encoder, GatysOptions(iterations=15, optimizer="adam", style_weight=1e3), 0.8)


def test_noise_init_is_seeded(random_encoder):
    content, style = _images(16)

    def run(seed: int) -> torch.Tensor:
        opts = GatysOptions(iterations=3, init="noise", seed=seed, style_weight=1e3)
        return run_gatys(random_encoder, content, style, opts, progress=False).image

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_non_finite_loss_is_a_clear_error(random_encoder):
    content, style = _images(16)
    content[0, 0, 0] = float("nan")
    with pytest.raises(GatysError, match="loss became nan at iteration 1"):
        run_gatys(random_encoder, content, style, GatysOptions(iterations=2), progress=False)
    with pytest.raises(GatysError, match="optimizer 'sgd'"):
        run_gatys(random_encoder, content, style, GatysOptions(optimizer="sgd"), progress=False)


def _png(path: Path, tensor: torch.Tensor) -> Path:
    Image.fromarray((tensor.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    return path


def test_cli_end_to_end(tmp_path: Path, random_encoder, capsys):
    content, style = _images(40)
    c, s = _png(tmp_path / "c.png", content), _png(tmp_path / "s.png", style)
    enc_path = tmp_path / "enc.pt"
    torch.save({"name": "vgg16_hed", "state_dict": random_encoder.state_dict()}, enc_path)
    out = tmp_path / "out" / "g.png"
    args = ["--params", str(ROOT / "params.yaml"), "gatys", str(c), str(s), "-o", str(out), "--encoder",
            str(enc_path), "--iterations", "4", "--size", "32", "--style-layers", "relu1_1,relu2_2",
            "--style-weight", "1000", "--tv-weight", "0.1"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    with Image.open(out) as img:
        assert img.size == (32, 32)
    with open(tmp_path / "out" / "g_history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["tv"]) > 0
    assert summary["iterations"] == 4  # the CSV keeps 6 significant digits of the final loss
    assert summary["final"]["loss"] == pytest.approx(float(rows[-1]["loss"]), rel=1e-5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.png", "g_history.csv"]  # no temp files left


def test_cli_missing_encoder_and_bad_layer(tmp_path: Path, random_encoder, capsys):
    content, style = _images(16)
    c, s = _png(tmp_path / "c.png", content), _png(tmp_path / "s.png", style)
    missing = tmp_path / "nope" / "encoder.pt"
    assert main(["--params", str(ROOT / "params.yaml"), "gatys", str(c), str(s), "-o", str(tmp_path / "o.png"),
                 "--encoder", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "encoder weights not found" in err and len(err.strip().splitlines()) == 1
    enc_path = tmp_path / "enc.pt"
    torch.save({"name": "vgg16_hed", "state_dict": random_encoder.state_dict()}, enc_path)
    assert main(["--params", str(ROOT / "params.yaml"), "gatys", str(c), str(s), "-o", str(tmp_path / "o.png"),
                 "--encoder", str(enc_path), "--content-layer", "relu3_4"]) == 1
    assert "unknown layer 'relu3_4'" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
