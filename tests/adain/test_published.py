"""The published AdaIN models (official Torch7 and the PyTorch port's .pth): both formats import through
the weights and train_recon stages, stylepipe's forward equals the published architecture's, bad files
fail with errors naming the file and what was expected, and nothing half-imported stays behind.

The tests write the published files themselves: random tensors of a realistic scale in the published
layouts, a .pth state dict of the nn.Sequential and a Torch7 file from the small writer below."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from stylepipe.adain.engine import Finish
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.model import load_stylizer
from stylepipe.adain.stylize import AdaINStylize, StylizeOptions
from stylepipe.adain.train import import_decoder
from stylepipe.core.config import Params, deep_merge, parse_params
from stylepipe.core.io import file_digest
from stylepipe.core.runtime import resolve_runtime
from stylepipe.nn.encoders import WeightsError, load_encoder
from stylepipe.nn.published import fetch
from stylepipe.nn.statistics import StyleBank
from stylepipe.nn.weights import run_weights
from tests.conftest import tiny_params_dict
from tests.data_fixtures import ServerState, http_server

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
RELU4_1 = 31  # modules of the published VGG up to and including relu4_1


# ------------------------------------------------------------------ the published networks, as released


def reference_vgg() -> nn.Sequential:
    """The normalised VGG19 of the releases: 1x1 conv 3->3, then reflection pad + 3x3 conv + ReLU per
    conv, 2x2 ceil-mode max-pools between the blocks, through relu5_4 (53 modules)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    cin = 3
    for block, (width, convs) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))):
        if block:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        for _ in range(convs):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, width, 3), nn.ReLU()]
            cin = width
    return nn.Sequential(*layers)


def reference_decoder() -> nn.Sequential:
    """The releases' decoder from relu4_1: 9 reflection-padded 3x3 convs, nearest x2 upsampling, the last
    conv 64->3 without ReLU (29 modules)."""
    def conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
        return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), *([nn.ReLU()] if relu else [])]

    def up() -> nn.Module:
        return nn.Upsample(scale_factor=2, mode="nearest")

    return nn.Sequential(*conv(512, 256), up(), *conv(256, 256), *conv(256, 256), *conv(256, 256),
                         *conv(256, 128), up(), *conv(128, 128), *conv(128, 64), up(), *conv(64, 64),
                         *conv(64, 3, relu=False))


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 5, 5, generator=g)
    return (nn.functional.interpolate(low, size=size, mode="bicubic", align_corners=False)
            + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


@torch.no_grad()
def realistic_vgg(seed: int = 0) -> nn.Sequential:
    """The published input conversion (RGB [0, 1] -> Caffe BGR 0-255 minus the mean) and Kaiming-normal
    3x3 convs: features on the published encoder's scale (large: relu4_1 RMS in the tens)."""
    torch.manual_seed(seed)
    vgg = reference_vgg().eval()
    first = vgg[0]
    first.weight.zero_()
    for rgb in range(3):
        first.weight[2 - rgb, rgb] = 255.0
    first.bias.copy_(-torch.tensor(CAFFE_MEAN_BGR))
    for m in list(vgg)[1:]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.normal_(m.bias, std=0.1)
    return vgg


@torch.no_grad()
def realistic_decoder(vgg: nn.Sequential, seed: int = 1) -> nn.Sequential:
    """Kaiming-normal convs scaled for the encoder's features, the last one set so that images come out
    around mid-grey inside [0, 1] (as a trained decoder's do: the comparison is not swamped by clamping)."""
    torch.manual_seed(seed)
    dec = reference_decoder().eval()
    for m in dec:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    probe = vgg[:RELU4_1](smooth_images(2, 64, 7))
    dec[1].weight.mul_(1.0 / probe.pow(2).mean().sqrt())
    out = dec(probe)
    last = dec[-1]
    last.weight.mul_(0.12 / out.std())
    last.bias.copy_(0.5 - (out.mean(dim=(0, 2, 3)) * 0.12 / out.std()))
    return dec


# ------------------------------------------------------------------ writing the two published formats


@dataclass
class T7Object:
    """A Torch7 class instance: its class name and its field table."""

    cls: str
    fields: dict[str, Any]


class Torch7Writer:
    """The binary Torch7 serialisation (torch.save in Lua, little-endian, 8-byte longs) of numbers,
    strings, booleans, tables, float tensors and class instances."""

    def __init__(self, f) -> None:
        self.f, self.index = f, 0

    def _pack(self, fmt: str, *values: Any) -> None:
        self.f.write(struct.pack("<" + fmt, *values))

    def _string(self, text: str) -> None:
        data = text.encode()
        self._pack("i", len(data))
        self.f.write(data)

    def _header(self, cls: str) -> None:
        self.index += 1
        self._pack("ii", 4, self.index)
        self._string("V 1")
        self._string(cls)

    def value(self, v: Any) -> None:
        if v is None:
            self._pack("i", 0)
        elif isinstance(v, bool):
            self._pack("ii", 5, int(v))
        elif isinstance(v, int | float):
            self._pack("id", 1, float(v))
        elif isinstance(v, str):
            self._pack("i", 2)
            self._string(v)
        elif isinstance(v, np.ndarray):
            self._tensor(v)
        elif isinstance(v, T7Object):
            self._header(v.cls)
            self.value(v.fields)
        elif isinstance(v, list):
            self.value({i + 1: x for i, x in enumerate(v)})
        elif isinstance(v, dict):
            self.index += 1
            self._pack("iii", 3, self.index, len(v))
            for key, item in v.items():
                self.value(key)
                self.value(item)
        else:
            raise TypeError(type(v))

    def _tensor(self, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array, dtype=np.float32)
        self._header("torch.FloatTensor")
        self._pack("i", a.ndim)
        self._pack(f"{a.ndim}q", *a.shape)
        self._pack(f"{a.ndim}q", *(s // a.itemsize for s in a.strides))
        self._pack("q", 1)  # 1-based storage offset
        self._header("torch.FloatStorage")
        self._pack("q", a.size)
        self.f.write(a.tobytes())


def t7_module(m: nn.Module) -> T7Object:
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0]
        return T7Object("nn.SpatialConvolution", {
            "nInputPlane": m.in_channels, "nOutputPlane": m.out_channels, "kW": k, "kH": k, "dW": 1, "dH": 1,
            "padW": 0, "padH": 0, "weight": m.weight.detach().numpy(), "bias": m.bias.detach().numpy(),
            "train": False})
    if isinstance(m, nn.ReflectionPad2d):
        return T7Object("nn.SpatialReflectionPadding", {"pad_l": 1, "pad_r": 1, "pad_t": 1, "pad_b": 1})
    if isinstance(m, nn.ReLU):
        return T7Object("nn.ReLU", {"threshold": 0, "val": 0, "inplace": False})
    if isinstance(m, nn.MaxPool2d):
        return T7Object("nn.SpatialMaxPooling", {"kW": 2, "kH": 2, "dW": 2, "dH": 2, "padW": 0, "padH": 0,
                                                 "ceil_mode": True})
    if isinstance(m, nn.Upsample):
        return T7Object("nn.SpatialUpSamplingNearest", {"scale_factor": 2})
    raise TypeError(type(m))


def write_t7(path: Path, modules: list[T7Object]) -> Path:
    with open(path, "wb") as f:
        Torch7Writer(f).value(T7Object("nn.Sequential", {"modules": modules, "train": False}))
    return path


def write_published(directory: Path, net: nn.Sequential, name: str, fmt: str) -> Path:
    """`net` as the releases store it: a .pth state dict (integer keys) or a Torch7 nn.Sequential."""
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "pth":
        torch.save(net.state_dict(), directory / f"{name}.pth")
        return directory / f"{name}.pth"
    return write_t7(directory / f"{name}.t7", [t7_module(m) for m in net])


# ------------------------------------------------------------------ params and the reference forward


def pinned(path: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    return {"file": str(path), "sha256": file_digest(path), "format": fmt, **extra}


def published_params(encoder: dict[str, Any], decoder: dict[str, Any] | None = None) -> Params:
    overlay = {"tracking": {"enabled": False}, "common": {"device": "cpu"},
               "weights": {"encoder": "vgg19_normalised", "vgg19_normalised": encoder},
               "adain": {"layer": "relu4_1", "decoder_width": 1.0, "init": decoder}}
    return parse_params(deep_merge(tiny_params_dict(), overlay))


def reference_adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The official AdaIN layer: the content batch-normalised (biased variance, eps 1e-5 under the sqrt),
    scaled by the style's biased std and shifted by its mean (the port's unbiased estimates cancel for
    content and style of one size)."""
    c_mean, c_var = content.mean((2, 3), keepdim=True), content.var((2, 3), unbiased=False, keepdim=True)
    s_mean, s_std = style.mean((2, 3), keepdim=True), style.var((2, 3), unbiased=False, keepdim=True).sqrt()
    return (content - c_mean) / (c_var + 1e-5).sqrt() * s_std + s_mean


@torch.no_grad()
def reference_stylise(vgg: nn.Sequential, dec: nn.Sequential, content: torch.Tensor, styles: torch.Tensor,
                      alpha: float = 1.0, weights: list[float] | None = None) -> torch.Tensor:
    """test.lua / test.py: encode to relu4_1, AdaIN (a weighted sum of AdaIN outputs for several
    styles), mix with the content features by alpha, decode; saved images are clamped to [0, 1]."""
    encode = vgg[:RELU4_1]
    c_feat, s_feat = encode(content), encode(styles)
    weights = weights or [1.0]
    target = sum(w * reference_adain(c_feat, s_feat[i : i + 1]) for i, w in enumerate(weights))
    return dec(alpha * target + (1 - alpha) * c_feat).clamp(0, 1)


def reference_coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference tools' colour preservation (utils.lua `coral`): the source's normalised pixels taken
    from its (correlation + I) to the target's by matrix square roots (SVD), then the target's std and
    mean (unbiased std)."""
    def normalised(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = img.reshape(3, -1).double()
        mean, std = flat.mean(1, keepdim=True), flat.std(1, keepdim=True)
        return (flat - mean) / std, mean, std

    def mat_sqrt(m: torch.Tensor) -> torch.Tensor:
        u, d, v = torch.svd(m)
        return u @ torch.diag(d.sqrt()) @ v.T

    src, _, _ = normalised(source)
    tgt, t_mean, t_std = normalised(target)
    eye = torch.eye(3, dtype=torch.float64)
    moved = mat_sqrt(tgt @ tgt.T + eye) @ torch.inverse(mat_sqrt(src @ src.T + eye)) @ src
    return (moved * t_std + t_mean).reshape(source.shape).float()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference networks and their files in both formats."""
    root = tmp_path_factory.mktemp("published")
    vgg = realistic_vgg()
    dec = realistic_decoder(vgg)
    files = {fmt: (write_published(root, vgg, "vgg_normalised", fmt), write_published(root, dec, "decoder", fmt))
             for fmt in ("pth", "t7")}
    return {"vgg": vgg, "decoder": dec, "files": files, "root": root}


def import_both(tmp: Path, enc_file: Path, dec_file: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The weights and train_recon stages run in `tmp` on the published files: models/ as the DAG has it."""
    monkeypatch.chdir(tmp)
    params = published_params(pinned(enc_file, fmt), pinned(dec_file, fmt))
    run_weights(params, cache_dir=tmp / ".cache")
    import_decoder(params, tmp / "models/recon", tmp / "reports/train_recon", tmp / ".cache")
    return tmp


# ------------------------------------------------------------------ faithfulness


@pytest.mark.parametrize("fmt", ["pth", "t7"])
def test_imported_model_matches_the_published_forward(published, fmt, tmp_path, monkeypatch):
    enc_file, dec_file = published["files"][fmt]
    root = import_both(tmp_path, enc_file, dec_file, fmt, monkeypatch)
    model = load_stylizer(root / "models/encoder/encoder.pt", root / "models/recon/decoder.pt")
    assert (model.encoder.spec.name, model.layer, model.decoder.width) == ("vgg19_normalised", "relu4_1", 1.0)
    assert (root / "reports/train_recon/losses.csv").read_text() == "step,lr,loss\n"
    content, style = smooth_images(1, 64, 1), smooth_images(1, 64, 2)
    vgg, dec = published["vgg"], published["decoder"]
    engine = torch_engine(model, resolve_runtime(model_common()), Finish("none", 0.0))  # the reference's outputs
    for alpha in (1.0, 0.5):
        ours = engine.stylize(content, style, alpha)
        theirs = reference_stylise(vgg, dec, content, style, alpha)
        assert float(theirs.std()) > 0.01 and float(((theirs > 0) & (theirs < 1)).float().mean()) > 0.9  # unclamped
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), float((ours - theirs).abs().max())


def test_legacy_torch_save_files_import_alike(published, tmp_path):
    """The port's 2018 release predates torch.save's zip format."""
    from stylepipe.adain.published import published_decoder
    from stylepipe.nn.published import detect_format

    legacy = tmp_path / "decoder.pth"
    torch.save(published["decoder"].state_dict(), legacy, _use_new_zipfile_serialization=False)
    assert not legacy.read_bytes().startswith(b"PK") and detect_format(legacy) == "pth"
    imported = published_decoder(legacy, "pth", "vgg19_normalised")
    current = published_decoder(published["files"]["pth"][1], "pth", "vgg19_normalised")
    assert all(torch.equal(a, b) for a, b in zip(imported.state_dict().values(), current.state_dict().values(),
                                                 strict=True))


def test_encoder_taps_match_the_published_layers(published, tmp_path, monkeypatch):
    """Every tap (Gatys, Johnson's loss network, the style losses) reads the published network's ReLU."""
    from stylepipe.nn.encoders import FeatureExtractor

    enc_file, dec_file = published["files"]["t7"]
    root = import_both(tmp_path, enc_file, dec_file, "t7", monkeypatch)
    encoder = load_encoder(root / "models/encoder/encoder.pt", last="relu5_4")
    x = smooth_images(1, 48, 3)
    relus = [i for i, m in enumerate(published["vgg"]) if isinstance(m, nn.ReLU)]
    names = ["relu1_1", "relu1_2", "relu2_2", "relu3_3", "relu4_1", "relu4_3", "relu5_1", "relu5_4"]
    order = [f"relu{b}_{k}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for k in range(1, n + 1)]
    with torch.no_grad(), FeatureExtractor(encoder, names) as extract:
        feats = extract(x)
        for name in names:
            expected = published["vgg"][: relus[order.index(name)] + 1](x)
            assert torch.allclose(feats[name], expected, atol=1e-5 * float(expected.abs().max())), name


def test_style_interpolation_and_colour_preservation_match_the_reference(published, tmp_path, monkeypatch):
    enc_file, dec_file = published["files"]["pth"]
    root = import_both(tmp_path, enc_file, dec_file, "pth", monkeypatch)
    model = load_stylizer(root / "models/encoder/encoder.pt", root / "models/recon/decoder.pt")
    engine = torch_engine(model, resolve_runtime(model_common()), Finish("none", 0.0))  # the reference's outputs
    content, styles = smooth_images(1, 64, 4), smooth_images(2, 64, 5)
    vgg, dec = published["vgg"], published["decoder"]

    stats = StyleBank(["a", "b"], *model.style_stats(styles), "vgg19_normalised", "relu4_1")
    for alpha in (1.0, 0.5):
        mixed = AdaINStylize(engine, StylizeOptions(alpha=alpha, weights=[3, 1], tile=0), stats=stats)(content)
        expected = reference_stylise(vgg, dec, content.expand(2, -1, -1, -1)[:1], styles, alpha, [0.75, 0.25])
        assert torch.allclose(mixed, expected, atol=1e-5, rtol=0), float((mixed - expected).abs().max())

    kept = AdaINStylize(engine, StylizeOptions(preserve_color="coral", tile=0), style_images=[styles[0]])(content)
    recoloured = reference_coral(styles[0], content[0])[None]
    expected = reference_stylise(vgg, dec, content, recoloured)
    assert torch.allclose(kept, expected, atol=1e-5, rtol=0), float((kept - expected).abs().max())


def model_common():
    from stylepipe.core.config import Common

    return Common(device="cpu", compile=False, bf16=False, channels_last=False)


# ------------------------------------------------------------------ bad input


def leftovers(directory: Path) -> list[str]:
    """Everything under `directory` (nothing may stay behind a failed import)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")) if directory.exists() else []


def weights_error(params: Params, tmp: Path) -> str:
    with pytest.raises(WeightsError) as err:
        run_weights(params, out_dir=tmp / "models/encoder", cache_dir=tmp / ".cache")
    assert leftovers(tmp / "models") == []
    return str(err.value)


def test_a_file_in_neither_format_or_not_the_declared_one_is_refused(published, tmp_path):
    junk = tmp_path / "vgg_normalised.pth"
    junk.write_text("<html>404 Not Found</html>")
    message = weights_error(published_params(pinned(junk, "pth")), tmp_path)
    assert str(junk) in message and "neither a torch .pth state dict nor a binary Torch7 .t7 file" in message
    t7_file = published["files"]["t7"][0]
    message = weights_error(published_params(pinned(t7_file, "pth")), tmp_path)
    assert f"{t7_file}: is a t7 file, but format pth is declared for it" in message


def test_state_dict_with_missing_extra_or_misshaped_tensors_is_refused(published, tmp_path):
    state = published["vgg"].state_dict()
    broken = {k: v for k, v in state.items() if k != "2.weight"}
    broken["53.weight"] = torch.zeros(3)
    broken["5.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(broken, tmp_path / "vgg.pth")
    message = weights_error(published_params(pinned(tmp_path / "vgg.pth", "pth")), tmp_path)
    assert str(tmp_path / "vgg.pth") in message and "the published normalised VGG19" in message
    assert "missing ['2.weight']" in message and "unexpected ['53.weight']" in message
    assert "5.weight (64, 32, 3, 3) (expected (64, 64, 3, 3))" in message
    torch.save({"model": state}, tmp_path / "wrapped.pth")  # a checkpoint, not a state dict
    message = weights_error(published_params(pinned(tmp_path / "wrapped.pth", "pth")), tmp_path)
    assert "expected a state dict (names to tensors)" in message


def test_torch7_file_with_unexpected_modules_is_refused(published, tmp_path):
    modules = [t7_module(m) for m in published["vgg"]]
    swapped = write_t7(tmp_path / "tanh.t7", [*modules[:3], T7Object("nn.Tanh", {}), *modules[4:]])
    message = weights_error(published_params(pinned(swapped, "t7")), tmp_path)
    assert f"{swapped}: module 4 is nn.Tanh, expected cudnn.ReLU or nn.ReLU" in message
    strided = dict(modules[2].fields, dW=2)
    message = weights_error(published_params(pinned(
        write_t7(tmp_path / "stride.t7", [*modules[:2], T7Object("nn.SpatialConvolution", strided), *modules[3:]]),
        "t7")), tmp_path)
    assert "module 3 (nn.SpatialConvolution) has {'dW': 2}" in message
    short = write_t7(tmp_path / "short.t7", modules[:RELU4_1])
    message = weights_error(published_params(pinned(short, "t7")), tmp_path)
    assert f"{short}: holds 31 modules, expected the published normalised VGG19" in message and "53 modules" in message


def test_wrong_or_missing_checksum_is_refused(published, tmp_path):
    enc_file, dec_file = published["files"]["pth"]
    wrong = pinned(enc_file, "pth") | {"sha256": file_digest(dec_file)}
    message = weights_error(published_params(wrong), tmp_path)
    assert f"{enc_file}: sha256 {file_digest(enc_file)} does not match the pinned weights.vgg19_normalised.sha256" \
        in message
    message = weights_error(published_params(pinned(enc_file, "pth") | {"sha256": None}), tmp_path)
    assert "weights.vgg19_normalised.sha256 is not set" in message and f"stylepipe checksum {enc_file}" in message


def test_decoder_that_does_not_fit_the_encoder_is_refused_and_nothing_is_left(published, tmp_path, monkeypatch):
    from tests.conftest import save_tiny_models

    enc_file, dec_file = published["files"]["pth"]
    monkeypatch.chdir(tmp_path)
    run_weights(published_params(pinned(enc_file, "pth")), cache_dir=tmp_path / ".cache")
    relu3 = reference_decoder()[13:]  # the relu3_1 half: its first conv takes 256 channels, not 512
    torch.save(relu3.state_dict(), tmp_path / "relu3.pth")
    for bad, expected in (
        (pinned(tmp_path / "relu3.pth", "pth"), "does not fit the published AdaIN decoder (vgg19_normalised relu4_1"),
        (pinned(dec_file, "pth", file=str(enc_file), sha256=file_digest(enc_file)), "missing ['1.weight'"),
        (pinned(published["files"]["t7"][1], "pth"), "is a t7 file, but format pth is declared"),
    ):
        params = published_params(pinned(enc_file, "pth"), bad)
        with pytest.raises(WeightsError) as err:
            import_decoder(params, tmp_path / "models/recon", tmp_path / "reports/train_recon", tmp_path / ".cache")
        assert bad["file"] in str(err.value) and expected in str(err.value), str(err.value)
        assert leftovers(tmp_path / "models/recon") == [] and leftovers(tmp_path / "reports") == []
    save_tiny_models(tmp_path / "models/encoder")  # a vgg16_hed encoder from the weights stage
    params = published_params(pinned(enc_file, "pth"), pinned(dec_file, "pth"))
    with pytest.raises(WeightsError, match=r"decodes relu4_1 of vgg19_normalised, but the encoder is 'vgg16_hed'"):
        import_decoder(params, tmp_path / "models/recon", tmp_path / "reports/train_recon", tmp_path / ".cache")
    assert leftovers(tmp_path / "models/recon") == []


def test_url_download_is_checked_cached_and_fails_clearly(published, tmp_path):
    enc_file = published["files"]["t7"][0]
    data, digest = enc_file.read_bytes(), file_digest(enc_file)
    state = ServerState(files={"/adain/vgg_normalised.t7": data})
    cache = tmp_path / "cache"
    with http_server(state) as base:
        url = f"{base}/adain/vgg_normalised.t7"
        got = fetch(url, digest, "weights.vgg19_normalised.sha256", cache)
        assert got.read_bytes() == data and fetch(url, digest, "key", cache) == got
        assert state.requests == ["/adain/vgg_normalised.t7"]  # the second call used the checked copy
        with pytest.raises(WeightsError, match=rf"{base}/adain/missing\.t7: download failed \(HTTP Error 404"):
            fetch(f"{base}/adain/missing.t7", digest, "key", tmp_path / "cache2")
        other = file_digest(published["files"]["pth"][0])
        with pytest.raises(WeightsError, match=rf"sha256 {digest} of the download does not match the pinned key"):
            fetch(url, other, "key", tmp_path / "cache3")
    assert [p for p in tmp_path.glob("cache[23]/**/*") if p.is_file()] == []  # no partial download left


# ------------------------------------------------------------------ the DAG on the published model


@pytest.mark.integration
def test_dvc_imports_fine_tunes_and_reruns_on_a_new_decoder(published, tmp_path):
    """DVC imports the published files, train_adain fine-tunes for adain.init.steps (tracked in MLflow),
    and a new decoder file with its checksum re-runs the import and what follows."""
    import json
    import shutil

    import yaml

    from tests.conftest import make_project_copy, run

    enc_file, dec_file = published["files"]["t7"][0], published["files"]["pth"][1]
    overlay = {"weights": {"encoder": "vgg19_normalised", "vgg19_normalised": pinned(enc_file, "t7")},
               "adain": {"layer": "relu4_1", "decoder_width": 1.0, "init": pinned(dec_file, "pth", steps=2)},
               "train_adain": {"checkpoint_every": 1}}
    for entry in (overlay["weights"]["vgg19_normalised"], overlay["adain"]["init"]):
        entry["file"] = f"published/{Path(entry['file']).name}"
    proj = make_project_copy(tmp_path / "proj", overlay)
    for f in (enc_file, dec_file):  # git ignores published/'s contents; DVC hashes them
        shutil.copy2(f, proj / "published" / f.name)
    run(["dvc", "repro", "train_adain"], proj)
    recon = json.loads((proj / "models/recon/summary.json").read_text())
    adain = json.loads((proj / "models/adain/summary.json").read_text())
    assert (recon["steps"], recon["sha256"]) == (0, file_digest(dec_file))
    assert adain["steps"] == 2 and adain["mlflow_run_id"]
    assert (proj / "models/adain/style_bank.pt").is_file()
    assert "Data and pipelines are up to date" in run(["dvc", "status", "--with-deps", "train_adain"], proj).stdout

    new_decoder = realistic_decoder(published["vgg"], seed=5)
    torch.save(new_decoder.state_dict(), proj / "published" / dec_file.name)
    assert "train_recon" in run(["dvc", "status", "--with-deps", "train_adain"], proj).stdout  # the folder changed
    failed = run(["dvc", "repro", "train_adain"], proj, check=False)  # the old pin no longer matches
    assert failed.returncode != 0 and "does not match the pinned adain.init.sha256" in failed.stdout + failed.stderr
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["adain"]["init"]["sha256"] = file_digest(proj / "published" / dec_file.name)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "train_adain"], proj)
    assert json.loads((proj / "models/recon/summary.json").read_text())["sha256"] == params["adain"]["init"]["sha256"]


def test_checksum_prints_the_entry_to_paste_and_the_profile_takes_it(published, tmp_path, capsys):
    import shutil

    import yaml

    from stylepipe.cli import main
    from stylepipe.core.config import load_params
    from stylepipe.core.profiles import apply_profile
    from tests.conftest import ROOT

    enc_file = published["files"]["t7"][0]
    assert main(["checksum", str(enc_file)]) == 0
    printed = capsys.readouterr().out.splitlines()
    entry = yaml.safe_load("\n".join(line for line in printed[1:] if not line.startswith("#")))
    assert entry == {"file": str(enc_file), "sha256": file_digest(enc_file), "format": "t7"}

    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    profile = yaml.safe_load((tmp_path / "profiles/pretrained.yaml").read_text())
    profile["weights"]["vgg19_normalised"] = entry  # what the README says to do
    (tmp_path / "profiles/pretrained.yaml").write_text(yaml.safe_dump(profile))
    apply_profile("pretrained", tmp_path / "params.yaml", tmp_path / "profiles")
    params = load_params(tmp_path / "params.yaml")
    assert params.weights.encoder == "vgg19_normalised" and params.weights.vgg19_normalised.sha256 == entry["sha256"]
    assert (params.adain.layer, params.adain.decoder_width, params.adain.init.steps) == ("relu4_1", 1.0, 0)
    assert params.adain.init.sha256 is None  # still to fill in: the stage refuses it (see above)


def test_params_refuse_a_published_decoder_at_another_depth_or_width():
    from stylepipe.core.config import ConfigError

    init = {"file": "published/decoder.t7", "format": "t7"}
    for layer, width in (("relu3_1", 1.0), ("relu4_1", 0.5)):
        raw = deep_merge(tiny_params_dict(), {"adain": {"layer": layer, "decoder_width": width, "init": init}})
        with pytest.raises(ConfigError, match=rf"adain.init imports a published decoder.*got {layer}, {width:g}"):
            parse_params(raw)
    with pytest.raises(ConfigError, match=r"adain.init.format: Input should be 'pth' or 't7'"):
        parse_params(deep_merge(tiny_params_dict(), {"adain": {"layer": "relu4_1", "decoder_width": 1.0,
                                                                "init": {**init, "format": "onnx"}}}))


def test_camera_path_exports_clean_and_fits_fp16_at_the_profile_stats_scale(published, tmp_path, monkeypatch):
    """VGG19-normalised to relu4_1 + the published decoder: Myriad X operators only, and relu4_1's
    squared deviations overflow FP16 unscaled but fit at the pretrained profile's export.stats_scale."""
    import yaml

    from stylepipe.adain.export import StatsModel, export_engine
    from stylepipe.export.myriad.opcheck import check_graph
    from stylepipe.export.onnx import ExportError, export_graph
    from stylepipe.export.openvino import check_fp16_range, fp16_compute_error, probe_images
    from tests.conftest import ROOT

    scale = yaml.safe_load((ROOT / "profiles/pretrained.yaml").read_text())["export"]["stats_scale"]
    enc_file, dec_file = published["files"]["t7"]
    root = import_both(tmp_path, enc_file, dec_file, "t7", monkeypatch)
    model = load_stylizer(root / "models/encoder/encoder.pt", root / "models/recon/decoder.pt")
    style_mean, style_std = model.style_stats(smooth_images(1, 64, 9))
    inputs = [(img, style_mean, style_std) for img in probe_images(64, 64, 0)]
    with pytest.raises(ExportError, match="FP16 overflow"):
        check_fp16_range(StatsModel(export_engine(model, Finish("none", 0.0)), 1.0).eval(), inputs, 1.0)
    stats = StatsModel(export_engine(model, Finish("none", 0.0)), scale).eval()
    assert check_fp16_range(stats, inputs, scale)["headroom"] > 8
    error = fp16_compute_error(stats, inputs[0])
    assert error["max_abs_diff"] < 5e-3 and error["mean_abs_diff"] < 1e-3, error
    export_graph(stats, inputs[0], ["content", "style_mean", "style_std"], tmp_path / "stats.onnx", 13, {})
    ops = check_graph(tmp_path / "stats.onnx")
    assert ops.ok, ops.violations


def test_loss_curves_show_an_imported_stage_without_rows(tmp_path):
    """evaluate's curves.png when train_recon/train_adain imported their model (header-only losses.csv)."""
    from PIL import Image

    from stylepipe.adain.train import ADAIN_COLUMNS, RECON_COLUMNS, write_untrained_history
    from stylepipe.evaluate.stage import loss_curves

    write_untrained_history(tmp_path / "recon.csv", RECON_COLUMNS)
    write_untrained_history(tmp_path / "adain.csv", ADAIN_COLUMNS)
    out = loss_curves({"train_recon": tmp_path / "recon.csv", "train_adain": tmp_path / "adain.csv"},
                      tmp_path / "curves.png")
    assert out == tmp_path / "curves.png" and Image.open(out).size[0] > Image.open(out).size[1]
