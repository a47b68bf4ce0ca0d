"""The `stylepipe` command line: stage dispatch, clear errors instead of tracebacks, `stylize`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from stylepipe.cli import main

from .conftest import ROOT, load_default_params, run


def _image(path: Path, size=(40, 30), mode="RGB") -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def test_bad_params_key_is_one_clear_line(tmp_path: Path, capsys):
    raw = load_default_params()
    raw["train_adain"]["learning_rate"] = 0.1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(params), "train_adain"]) == 1
    err = capsys.readouterr().err
    assert "stylepipe train_adain: error:" in err
    assert "train_adain.learning_rate: unknown key" in err
    assert "Traceback" not in err


def test_missing_inputs_name_the_file(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    assert main(["evaluate"]) == 1
    err = capsys.readouterr().err
    assert "models/encoder/encoder.pt" in err and "not found" in err


def test_stylize_image_and_folder(tmp_path: Path, tiny_models):
    enc, dec = tiny_models
    content, style = _image(tmp_path / "c.png", (44, 30)), _image(tmp_path / "s.jpg", (32, 32))
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), "--style", str(style), "-o", str(out), "--encoder", str(enc),
                 "--decoder", str(dec), "--alpha", "0.5"]) == 0
    with Image.open(out) as img:
        assert img.size == (44, 30)  # any size: reflect-padded to multiples of 8 and cropped back
    folder = tmp_path / "in"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "b.png", mode="L")  # greyscale is converted, not rejected
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result_dir = tmp_path / "styled"
    assert main(["stylize", str(folder), "--style", str(style), "-o", str(result_dir), "--encoder", str(enc),
                 "--decoder", str(dec)]) == 0
    assert sorted(p.name for p in result_dir.iterdir()) == ["a_stylized.png", "b_stylized.png"]


def test_stylize_rejects_bad_alpha_and_unreadable_image(tmp_path: Path, tiny_models, capsys):
    enc, dec = tiny_models
    style = _image(tmp_path / "s.png")
    assert main(["stylize", str(style), "--style", str(style), "-o", str(tmp_path / "o.png"), "--alpha", "1.5",
                 "--encoder", str(enc), "--decoder", str(dec)]) == 1
    assert "--alpha 1.5 is out of range" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["stylize", str(bad), "--style", str(style), "-o", str(tmp_path / "o.png"),
                 "--encoder", str(enc), "--decoder", str(dec)]) == 1
    assert "bad.jpg: not a readable image" in capsys.readouterr().err


def test_console_script_lists_every_stage():
    out = run(["stylepipe", "--help"], ROOT).stdout
    for stage in ("download", "weights", "preprocess", "train_recon", "train_adain", "evaluate",
                  "export_onnx", "export_openvino", "compile_blob", "demo", "stylize", "profile"):
        assert stage in out
