"""Encoders, weights conversion and download."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from stylepipe.core.config import parse_params
from stylepipe.core.io import file_digest
from stylepipe.nn.encoders import HED_WEIGHTS, TAP_CHANNELS, WeightsError, build_encoder, full_depth, load_encoder
from stylepipe.nn.weights import (
    download_checkpoint,
    keras_state_dict,
    run_weights,
    torchvision_state_dict,
    wheel_file,
    wheel_state_dict,
)

from ..conftest import tiny_params_dict
from ..data_fixtures import ServerState, http_server
from ..netutil import refusing_port


@pytest.mark.parametrize("name", ["vgg16_hed", "vgg19", "vgg19_bn"])
def test_encoder_taps_and_shapes(name):
    enc = build_encoder(name)
    feats = enc(torch.rand(2, 3, 64, 48))
    assert list(feats) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    for i, (tap, f) in enumerate(feats.items()):
        assert f.shape == (2, TAP_CHANNELS[tap], 64 // 2**i, 48 // 2**i)
        assert (f >= 0).all()
    assert not any(p.requires_grad for p in enc.parameters())


def test_encoder_stays_in_eval_mode_and_bn_stats_never_update():
    enc = build_encoder("vgg19_bn")
    before = {k: v.clone() for k, v in enc.state_dict().items() if "running" in k}
    enc.train()
    assert not enc.training
    enc(torch.rand(2, 3, 32, 32) * 5)
    after = {k: v for k, v in enc.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hed_weights_convert_to_torch_layout():
    h5 = wheel_file(HED_WEIGHTS)
    state = wheel_state_dict("vgg16_hed")
    with h5py.File(h5) as f:
        kernel = torch.from_numpy(f["block1/layers/conv2d/vars/0"][()])
        last = torch.from_numpy(f["block4/layers/conv2d_2/vars/1"][()])
    first_key = "layers.1.weight"
    assert torch.equal(state[first_key], kernel.permute(3, 2, 0, 1))
    assert state[first_key].shape == (64, 3, 3, 3)
    biases = [k for k in state if k.endswith("bias")]
    assert torch.equal(state[biases[-1]], last)
    assert len(biases) == 10  # VGG16 convs up to relu4_3 (all of block 4)


def test_hed_checksum_mismatch_is_refused():
    with pytest.raises(WeightsError, match="does not match the pinned"):
        keras_state_dict(wheel_file(HED_WEIGHTS), "vgg16_hed", replace(HED_WEIGHTS, sha256="0" * 64))


def test_weights_stage_writes_uniform_file(tmp_path: Path):
    params = parse_params(tiny_params_dict())
    record = run_weights(params, tmp_path / "encoder")
    enc = load_encoder(tmp_path / "encoder" / "encoder.pt")
    assert enc.spec.name == "vgg16_hed"
    assert record["file_sha256"] == file_digest(tmp_path / "encoder" / "encoder.pt")
    # real pretrained filters respond to structure: an edge image gives stronger relu1_1 than a flat one
    flat = torch.full((1, 3, 32, 32), 0.5)
    edges = flat.clone()
    edges[..., ::4, :] = 1.0
    assert enc(edges)["relu1_1"].std() > enc(flat)["relu1_1"].std() * 2


def test_load_encoder_errors_name_the_file(tmp_path: Path):
    with pytest.raises(WeightsError, match="not found"):
        load_encoder(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"junk\.pt: not a readable"):
        load_encoder(junk)
    wrong = tmp_path / "wrong.pt"
    state = build_encoder("vgg16_hed").state_dict()
    state["layers.1.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save({"name": "vgg16_hed", "state_dict": state}, wrong)
    with pytest.raises(WeightsError, match=r"shape mismatch.*layers\.1\.weight"):
        load_encoder(wrong)


def _fake_torchvision_checkpoint(directory: Path, name: str) -> Path:
    """A real torchvision VGG feature stack (random weights) saved under torchvision's naming scheme."""
    torch.manual_seed(0)
    features = make_layers(cfgs["E"], batch_norm=name == "vgg19_bn")
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    tmp = directory / "tmp.pth"
    torch.save(state, tmp)
    final = directory / f"{name}-{file_digest(tmp)[:8]}.pth"
    tmp.rename(final)
    return final


@pytest.mark.parametrize("name", ["vgg19", "vgg19_bn"])
def test_torchvision_download_and_mapping(tmp_path: Path, name: str):
    served = tmp_path / "served"
    served.mkdir()
    ckpt = _fake_torchvision_checkpoint(served, name)
    with http_server(ServerState(files={f"/{ckpt.name}": ckpt.read_bytes()})) as base:
        got = download_checkpoint(f"{base}/{ckpt.name}", tmp_path / "cache" / ckpt.name)
    state = torchvision_state_dict(got, name)
    theirs = torch.load(ckpt, weights_only=True)
    assert torch.equal(state["layers.1.weight"], theirs["features.0.weight"])
    enc = build_encoder(name, full_depth(name))
    enc.load_state_dict(state)  # every key and shape fits, all of block 4


def test_torchvision_download_rejects_wrong_hash(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    ckpt = _fake_torchvision_checkpoint(served, "vgg19")
    lying = served / "vgg19-00000000.pth"
    ckpt.rename(lying)
    state = ServerState(files={f"/{lying.name}": lying.read_bytes()})
    mismatch = r"does not match the pinned sha256 prefix of its file name 00000000"
    with http_server(state) as base, pytest.raises(WeightsError, match=mismatch):
        download_checkpoint(f"{base}/{lying.name}", tmp_path / "cache" / lying.name)
    assert not (tmp_path / "cache" / lying.name).exists()


def test_torchvision_download_offline_is_a_clear_error(tmp_path: Path):
    with refusing_port() as port, pytest.raises(WeightsError, match=r"download failed.*vgg16_hed"):
        download_checkpoint(f"http://127.0.0.1:{port}/vgg19-dcbb9e9d.pth", tmp_path / "x.pth", timeout_s=5)


def test_a_new_encoder_is_one_registry_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An entry naming a torchvision checkpoint is all the weights stage needs: no params section, no code."""
    from stylepipe.nn import encoders
    from stylepipe.nn.encoders import SPECS, TorchvisionWeights

    served = tmp_path / "served"
    served.mkdir()
    ckpt = _fake_torchvision_checkpoint(served, "vgg19")
    monkeypatch.setitem(encoders.SPECS, "vgg19_mirror",
                        replace(SPECS["vgg19"], name="vgg19_mirror", weights=TorchvisionWeights("")))
    with http_server(ServerState(files={f"/{ckpt.name}": ckpt.read_bytes()})) as base:
        monkeypatch.setitem(encoders.SPECS, "vgg19_mirror",
                            replace(SPECS["vgg19_mirror"], weights=TorchvisionWeights(f"{base}/{ckpt.name}")))
        params = parse_params({**tiny_params_dict(), "weights": {"encoder": "vgg19_mirror"}})
        record = run_weights(params, tmp_path / "encoder", tmp_path / ".cache")
    assert (record["encoder"], record["sha256"]) == ("vgg19_mirror", file_digest(ckpt))
    enc = load_encoder(tmp_path / "encoder" / "encoder.pt")
    assert enc.spec.name == "vgg19_mirror"
    assert torch.equal(enc.state_dict()["layers.1.weight"], torch.load(ckpt, weights_only=True)["features.0.weight"])


def test_an_unknown_encoder_or_a_moved_params_key_is_a_clear_error(tmp_path: Path):
    from stylepipe.core.config import ConfigError

    params = parse_params({**tiny_params_dict(), "weights": {"encoder": "resnet50"}})
    with pytest.raises(WeightsError, match=r"weights.encoder 'resnet50': unknown encoder; expected one of \["):
        run_weights(params, tmp_path / "encoder", tmp_path / ".cache")
    assert not (tmp_path / "encoder").exists()
    old = {"encoder": "vgg16_hed", "vgg16_hed": {"h5_sha256": HED_WEIGHTS.sha256}}
    with pytest.raises(ConfigError, match=r"weights.vgg16_hed \(the .h5's sha256\): no longer params; .*SPECS"):
        parse_params({**tiny_params_dict(), "weights": old})
