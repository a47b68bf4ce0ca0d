"""The package stage: the pipeline's model folder, and `stylize` inside the project using it by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylepipe.adain.package import run_package
from stylepipe.cli import main
from stylepipe.core.config import load_params

from ..conftest import ROOT, save_tiny_models
from ..data_fixtures import shard_store

SIZE = 32


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with the trained models' files (tiny, untrained), prepared data and params.yaml
    with finish.palette none."""
    from stylepipe.adain.model import load_stylizer
    from stylepipe.nn.palette import palette_of
    from stylepipe.nn.statistics import StyleBank

    root = tmp_path_factory.mktemp("project")
    for folder in ("models/encoder", "models/adain"):
        (root / folder).mkdir(parents=True)
    enc, dec = save_tiny_models(root, "relu3_1", 0.5)
    shutil.move(enc, root / "models/encoder/encoder.pt")
    shutil.move(dec, root / "models/adain/decoder.pt")
    model = load_stylizer(root / "models/encoder/encoder.pt", root / "models/adain/decoder.pt")
    style = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    StyleBank(["stripes"], *[t.detach() for t in model.style_stats(style)], "vgg16_hed", "relu3_1",
              palette_of(style[0])[None]).save(root / "models/adain/style_bank.pt")
    shard_store(root / "data/prepared/content", [("train", None, (48, 40))] * 3 + [("val", None, (40, 40))])
    shard_store(root / "data/prepared/style", [("train", "A", (40, 40)), ("val", "A", (40, 40))])
    params = (ROOT / "params.yaml").read_text().replace("  palette: histogram ", "  palette: none      ", 1)
    (root / "params.yaml").write_text(params)
    assert load_params(root / "params.yaml").finish.palette == "none"
    return root


def _package(project: Path, images: int, out: str) -> dict:
    params = load_params(project / "params.yaml")
    params = params.model_copy(update={"package": params.package.model_copy(
        update={"calibration_images": images, "calibration_size": SIZE})})
    return run_package(params, project / out, project / "models/encoder/encoder.pt",
                       project / "models/adain/decoder.pt", project / "models/adain/style_bank.pt",
                       project / "data/prepared")


def _photo(path: Path) -> Path:
    Image.fromarray((np.random.default_rng(0).random((36, 44, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_package_writes_the_folder_with_the_finish_section_and_an_int8_ir(project: Path):
    record = _package(project, 2, "packaged")
    assert record["finish"] == {"palette": "none", "detail": 1.0}
    assert {"openvino/encoder.xml", "openvino/decoder.xml", "openvino_int8/encoder.xml"} <= set(record["files"])
    assert json.loads((project / "packaged/model.json").read_text()) == record
    without = _package(project, 0, "no_int8")
    assert not any(name.startswith("openvino_int8/") for name in without["files"])


def test_stylize_inside_the_project_uses_the_model_folder_on_openvino(project: Path, monkeypatch, capsys):
    """With models/stylizer present, `stylize` with no --model runs its OpenVINO IR (auto on a CPU), INT8
    included; without it, PyTorch on models/adain, saying so in one line, and --backend openvino names the
    stage that makes the IR; a folder older than models/adain is refused, naming the stage that renews it."""
    monkeypatch.chdir(project)
    photo = _photo(project / "photo.png")
    shutil.rmtree(project / "models/stylizer", ignore_errors=True)
    assert main(["stylize", str(photo), "--style", str(photo), "-o", "torch.png", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "models/stylizer not found (the package stage writes it): PyTorch" in out.err
    assert "engine" not in json.loads(out.out)
    assert main(["stylize", str(photo), "--style", str(photo), "-o", "x.png", "--backend", "openvino"]) == 1
    assert "the package stage writes it (`dvc repro package`)" in capsys.readouterr().err
    assert not Path("x.png").exists()

    _package(project, 2, "models/stylizer")
    capsys.readouterr()  # NNCF's progress while quantising
    for precision in ("default", "int8"):
        assert main(["stylize", str(photo), "--style", str(photo), "-o", f"{precision}.png", "--precision",
                     precision, "--no-progress"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["model"] == "models/stylizer" and result["engine"] == f"openvino ({precision}, cpu)"
        assert Image.open(f"{precision}.png").size == (44, 36)

    decoder = project / "models/adain/decoder.pt"
    trained = decoder.read_bytes()
    decoder.write_bytes(trained + b"retrained")  # models/adain changed, package not re-run
    assert main(["stylize", str(photo), "--style", str(photo), "-o", "stale.png", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "models/stylizer/decoder.pt: older than models/adain/decoder.pt" in err and "dvc repro package" in err
    assert not Path("stale.png").exists()
    decoder.write_bytes(trained)


def test_int8_without_the_quantised_ir_names_the_setting_that_makes_it(project: Path, monkeypatch, capsys):
    monkeypatch.chdir(project)
    photo = _photo(project / "photo.png")
    _package(project, 0, "models/stylizer")
    assert main(["stylize", str(photo), "--style", str(photo), "-o", "refused.png", "--precision", "int8"]) == 1
    err = capsys.readouterr().err
    assert "models/stylizer: " in err and "no INT8 OpenVINO IR" in err and "package.calibration_images > 0" in err
    assert not Path("refused.png").exists()
