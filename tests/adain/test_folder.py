"""The model folder and the public API: self-contained, checked file by file, on either backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylepipe
from stylepipe.adain.engine import Finish
from stylepipe.adain.folder import ModelFolderError, write_model_folder
from stylepipe.adain.ir import IRError

from ..conftest import save_tiny_models


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from stylepipe.adain.model import load_stylizer
    from stylepipe.nn.statistics import StyleBank

    root = tmp_path_factory.mktemp("m")
    enc, dec = save_tiny_models(root, "relu3_1", 0.5)
    model = load_stylizer(enc, dec)
    g = torch.Generator().manual_seed(1)
    style = torch.rand(1, 3, 32, 32, generator=g)
    from stylepipe.nn.palette import palette_of

    StyleBank(["stripes"], *[t.detach() for t in model.style_stats(style)], "vgg16_hed", "relu3_1",
              palette_of(style[0])[None]).save(root / "bank.pt")
    calibration = [torch.rand(1, 3, 32, 32, generator=g) for _ in range(3)]
    write_model_folder(root / "model", enc, dec, root / "bank.pt", Finish("histogram", 1.0), calibration)
    return root / "model"


def _photo(path: Path) -> Path:
    arr = (np.random.default_rng(0).random((36, 44, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_readme_example_runs_as_written(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any folder, no params.yaml
    photo = _photo(tmp_path / "photo.png")
    model = stylepipe.load(folder)
    out = model.stylize(photo, "stripes", alpha=0.8)
    out.save("out.png")
    assert out.size == (44, 36) and Path("out.png").is_file()
    assert model.engine.backend.name == "openvino"


def test_both_backends_give_the_same_picture_from_paths_pil_and_arrays(folder, tmp_path):
    photo = _photo(tmp_path / "photo.png")
    array = np.asarray(Image.open(photo).convert("RGB"))
    torch_out = stylepipe.load(folder, backend="torch").stylize(array, Image.open(photo))
    ov_out = stylepipe.load(folder, backend="openvino", precision="f32").stylize(photo, photo)
    assert np.abs(np.asarray(torch_out, np.int16) - np.asarray(ov_out, np.int16)).max() <= 1
    assert stylepipe.load(folder, precision="int8").stylize(photo, "stripes").size == (44, 36)


def test_a_missing_or_altered_file_or_a_bad_option_is_named(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "openvino" / "decoder.bin").write_bytes(b"x" + (copy / "openvino" / "decoder.bin").read_bytes()[1:])
    with pytest.raises(ModelFolderError, match=r"openvino/decoder\.bin: altered"):
        stylepipe.load(copy)
    shutil.copyfile(folder / "openvino" / "decoder.bin", copy / "openvino" / "decoder.bin")
    (copy / "style_bank.pt").unlink()
    with pytest.raises(ModelFolderError, match=r"style_bank\.pt: missing from the model folder"):
        stylepipe.load(copy)
    with pytest.raises(ModelFolderError, match=r"model\.json: not found"):
        stylepipe.load(tmp_path)
    with pytest.raises(ModelFolderError, match=r"backend 'tpu' is not supported"):
        stylepipe.load(folder, backend="tpu")
    with pytest.raises(IRError, match=r"precision 'fp4' is not supported"):
        stylepipe.load(folder, backend="openvino", precision="fp4")
    with pytest.raises(ModelFolderError, match=r"image: expected a path, a PIL image"):
        stylepipe.load(folder, backend="torch").stylize(3, "stripes")


def test_cli_stylizes_with_a_model_folder_from_any_directory(folder, tmp_path, monkeypatch, capsys):
    from stylepipe.cli import main

    monkeypatch.chdir(tmp_path)  # no params.yaml here
    photo = _photo(tmp_path / "photo.png")
    assert main(["stylize", str(photo), "--model", str(folder), "--style", str(photo), "-o", "out.png",
                 "--precision", "int8", "--no-progress"]) == 0
    assert Image.open("out.png").size == (44, 36)
    assert main(["stylize", str(photo), "--model", str(folder), "--style", str(photo), "-o", "bad.png",
                 "--backend", "openvino", "--precision", "bf16", "--alpha", "2", "--no-progress"]) == 1
    assert "--alpha: alpha 2.0 is out of range" in capsys.readouterr().err and not Path("bad.png").exists()
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[2] / "params.yaml").read_text())
    assert main(["stylize", str(photo), "--style", str(photo), "-o", "x.png", "--backend", "openvino"]) == 1
    assert "--model DIR" in capsys.readouterr().err and not Path("x.png").exists()


def test_the_int8_decoder_is_calibrated_on_adain_targets_towards_the_banks_styles(tmp_path, monkeypatch):
    """The decoder decodes AdaIN targets, whose per-channel statistics are the painting's, not the photo's:
    its INT8 ranges come from those (each calibration photo towards the bank's styles in turn)."""
    import stylepipe.adain.folder as folder_module
    from stylepipe.adain.model import load_stylizer
    from stylepipe.nn.functional import adain
    from stylepipe.nn.statistics import StyleBank

    enc, dec = save_tiny_models(tmp_path, "relu3_1", 0.5)
    model = load_stylizer(enc, dec)
    g = torch.Generator().manual_seed(2)
    styles = torch.rand(2, 3, 32, 32, generator=g) * torch.tensor([0.2, 3.0])[:, None, None, None]
    with torch.no_grad():
        mean, std = model.style_stats(styles)
    StyleBank(["dim", "bright"], mean, std, "vgg16_hed", "relu3_1").save(tmp_path / "bank.pt")
    photos = [torch.rand(1, 3, 32, 32, generator=g) for _ in range(3)]
    seen: dict[str, list[torch.Tensor]] = {}
    monkeypatch.setattr(folder_module, "quantize_ir",
                        lambda ir, out, contents, targets: seen.update(contents=list(contents), targets=list(targets)))
    write_model_folder(tmp_path / "model", enc, dec, tmp_path / "bank.pt", Finish("none", 0.0), photos)
    assert all(torch.equal(a, b) for a, b in zip(seen["contents"], photos, strict=True))
    with torch.no_grad():
        expected = [adain(model.encoder.encode(p), mean[i % 2][None], std[i % 2][None]) for i, p in enumerate(photos)]
        features = [model.encoder.encode(p) for p in photos]
    assert all(torch.allclose(t, e, atol=1e-5) for t, e in zip(seen["targets"], expected, strict=True))
    assert not any(torch.allclose(t, f, atol=1e-2) for t, f in zip(seen["targets"], features, strict=True))
