"""The pyfunc model at each AdaIN depth, and logged to MLflow and served over REST by MLflow's scoring server
(the uvicorn command `mlflow models serve` runs, on a socket the test binds to port 0)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from stylepipe.adain.engine import Finish
from stylepipe.adain.model import AdaINStylizer, Decoder, save_decoder
from stylepipe.nn.encoders import build_encoder
from stylepipe.nn.statistics import StyleBank, StyleBankError
from stylepipe.serving import AdaINPyfunc, encode_file, encode_png, log_serving_model

from .conftest import ADAIN_DEPTHS, depth_id, save_tiny_models, tool_env

MAX_PIXELS = 64 * 64


def saved_stats(path: Path, layer: str, width: float = 1.0) -> Path:
    """One style's statistics computed by an untrained model at `layer`, saved as a file."""
    torch.manual_seed(1)
    model = AdaINStylizer(build_encoder("vgg16_hed", layer), Decoder("vgg16_hed", layer, width)).eval()
    with torch.no_grad():
        m, s = model.style_stats(torch.rand(1, 3, 32, 32))
    return StyleBank(["stripes"], m, s, "vgg16_hed", layer).save(path)


NETWORK_FINISH = {"palette": "none", "detail": 1.0}  # the fine detail restored, no palette match


def loaded_pyfunc(directory: Path, depth: tuple[str, float], bank_layer: str | None = None,
                  finish: dict | None = NETWORK_FINISH) -> AdaINPyfunc:
    """The pyfunc model as `mlflow models serve` loads it, with models at `depth`, a style bank at
    `bank_layer` (default: the model's) and the finishing settings evaluate logs with it (None: none)."""
    enc, dec = save_tiny_models(directory, *depth)
    bank = saved_stats(directory / "bank.pt", bank_layer or depth[0])
    config = {"max_pixels": MAX_PIXELS, **({"finish": finish} if finish is not None else {})}
    context = SimpleNamespace(artifacts={"encoder": str(enc), "decoder": str(dec), "style_bank": str(bank)},
                              model_config=config)
    model = AdaINPyfunc()
    model.load_context(context)
    return model


@pytest.mark.parametrize("depth", ADAIN_DEPTHS, ids=depth_id)
def test_pyfunc_stylises_at_each_depth(tmp_path: Path, depth: tuple[str, float]) -> None:
    model = loaded_pyfunc(tmp_path, depth)
    assert model.model.layer == depth[0] and model.model.decoder.width == depth[1]
    same = encode_file(saved_stats(tmp_path / "same.pt", depth[0]))
    rows = pd.DataFrame([
        {"content": _photo(50, 36), "style": encode_png(torch.rand(3, 32, 32)), "alpha": 0.7},
        {"content": _photo(40, 40), "style_name": "stripes"},
        {"content": _photo(24, 32), "style_stats": same},
    ])
    out = model.predict(None, rows)
    assert list(zip(out["width"], out["height"], strict=True)) == [(50, 36), (40, 40), (24, 32)]
    # stylised, not passed through: the (untrained, greyish) network's drawing, far from the photo itself
    # (a smooth photo: restoring its fine detail, which noise is all of, gives none of it back)
    yy, xx = np.mgrid[0:40, 0:40] / 39.0
    smooth = (np.stack([xx, yy, 1 - xx * yy], axis=-1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format="PNG")
    photo = base64.b64encode(buf.getvalue()).decode()
    g = torch.Generator().manual_seed(2)
    dark, bright = torch.rand(3, 32, 32, generator=g) * 0.3, 0.7 + torch.rand(3, 32, 32, generator=g) * 0.3
    pair = model.predict(None, pd.DataFrame([{"content": photo, "style": encode_png(dark)},
                                             {"content": photo, "style": encode_png(bright)}]))
    on_dark, on_bright = (_pixels(image) for image in pair["image"])
    assert np.abs(on_dark - _pixels(photo)).mean() > 0.02 and np.abs(on_bright - _pixels(photo)).mean() > 0.02
    other = next(layer for layer, _ in ADAIN_DEPTHS if layer != depth[0])
    other_stats = encode_file(saved_stats(tmp_path / "o.pt", other))
    request = pd.DataFrame([{"content": _photo(40, 40), "style_stats": other_stats}])
    with pytest.raises(MlflowException, match=rf"style_stats: style statistics of encoder 'vgg16_hed' at "
                                              rf"{other}, .* but the model takes encoder 'vgg16_hed' at {depth[0]}"):
        model.predict(None, request)


def test_a_bank_of_another_layer_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(StyleBankError, match=r"bank\.pt: style statistics of encoder 'vgg16_hed' at relu4_1, 512 "
                                           r"channels, but the model takes encoder 'vgg16_hed' at relu3_1, 256"):
        loaded_pyfunc(tmp_path, ("relu3_1", 1.0), bank_layer="relu4_1")


def test_a_serving_model_without_finishing_settings_is_refused_saying_how_to_fix_it(tmp_path: Path) -> None:
    """A pyfunc model logged before the finishing settings moved to params `finish` records none: loading
    it names the cause instead of guessing the settings."""
    from stylepipe.core.errors import InputError

    with pytest.raises(InputError, match=r"records no finishing settings .* log it again with evaluate"):
        loaded_pyfunc(tmp_path, ("relu3_1", 0.5), finish=None)


def test_a_palette_model_serves_outputs_in_the_style_images_palette(tmp_path: Path) -> None:
    """A model logged with finish.palette histogram: a request's style image brings its palette, and a
    bank without palettes is a 4xx saying how to get them."""
    from stylepipe.serving import decode_image

    model = loaded_pyfunc(tmp_path, ("relu3_1", 0.5), finish={"palette": "histogram", "detail": 1.0})
    dark = torch.rand(3, 32, 32) * 0.2
    out = model.predict(None, pd.DataFrame([{"content": _photo(40, 40), "style": encode_png(dark)}]))
    assert decode_image(out["image"][0], "image", MAX_PIXELS).max() <= 0.21
    with pytest.raises(MlflowException, match="hold no palette"):
        model.predict(None, pd.DataFrame([{"content": _photo(40, 40), "style_name": "stripes"}]))


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\n"
       b"newpath 0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _never_ghostscript(monkeypatch) -> None:
    """Pillow's EPS decoder runs Ghostscript: here it fails the test if it is ever reached."""
    from PIL import EpsImagePlugin

    def refuse(*args, **kwargs):
        raise AssertionError("the EPS decoder ran (Ghostscript would have been started)")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", refuse)


def _rotated_photo(w: int, h: int, orientation: int) -> str:
    """A w x h JPEG whose EXIF orientation asks viewers to rotate it (6: 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        buf, format="JPEG", exif=exif)
    return _b64(buf.getvalue())


def _stats_file(path: Path, mean, std, names=("s",)) -> str:
    torch.save({"format": "stylepipe.style_stats/1", "encoder": "vgg16_hed", "layer": "relu3_1",
                "names": list(names), "mean": mean, "std": std}, path)
    return encode_file(path)


def test_an_eps_is_refused_without_running_its_decoder(tmp_path: Path, monkeypatch) -> None:
    _never_ghostscript(monkeypatch)
    model = loaded_pyfunc(tmp_path, ("relu3_1", 0.5))
    for field in ("content", "style"):
        row = {"content": _photo(32, 32), "style": _photo(32, 32), field: _b64(EPS)}
        with pytest.raises(MlflowException) as caught:
            model.predict(None, pd.DataFrame([row]))
        assert caught.value.message.startswith(f"row 0: {field}: not a readable image of an accepted format (JPEG, ")


def test_exif_orientation_is_applied_as_the_cli_does(tmp_path: Path) -> None:
    model = loaded_pyfunc(tmp_path, ("relu3_1", 0.5))
    out = model.predict(None, pd.DataFrame([{"content": _rotated_photo(40, 24, 6), "style_name": "stripes"}]))
    assert (out["width"][0], out["height"][0]) == (24, 40)  # portrait, as the phone showed it


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        (torch.rand(1, 1, 1, 1), torch.rand(1, 1, 1, 1) + 0.1, "style statistics of .*1 channels, but the model "
                                                                "takes .*256 channels"),
        (torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1) + 0.1, "style statistics of .*3 channels, but the model takes"),
        (torch.rand(1, 256, 2, 2), torch.rand(1, 256, 2, 2) + 0.1, r"mean must be \[S, C, 1, 1\] for S=1 names, "
                                                                    r"got \[1, 256, 2, 2\]"),
        (torch.full((1, 256, 1, 1), float("nan")), torch.ones(1, 256, 1, 1), "mean holds NaN or infinite"),
        (torch.zeros(1, 256, 1, 1), torch.full((1, 256, 1, 1), float("inf")), "std holds NaN or infinite"),
        (torch.zeros(1, 256, 1, 1), -torch.ones(1, 256, 1, 1), "std must be positive"),
        ([0.0] * 256, torch.ones(1, 256, 1, 1), "mean must be a float tensor, got list"),
    ],
    ids=["1-channel", "3-channel", "spatial", "nan-mean", "inf-std", "negative-std", "list"],
)
def test_style_stats_contents_are_checked(tmp_path: Path, mean, std, message) -> None:
    model = loaded_pyfunc(tmp_path, ("relu3_1", 0.5))
    row = {"content": _photo(32, 32), "style_stats": _stats_file(tmp_path / "s.pt", mean, std)}
    with pytest.raises(MlflowException) as caught:
        model.predict(None, pd.DataFrame([row]))
    assert re.match(f"row 0: style_stats: {message}", caught.value.message), caught.value.message
    assert caught.value.get_http_status_code() == 400


def test_rows_per_request_are_limited(tmp_path: Path) -> None:
    model = loaded_pyfunc(tmp_path, ("relu3_1", 0.5))
    rows = pd.DataFrame([{"content": _photo(24, 24), "style_name": "stripes"}] * (model.max_rows + 1))
    with pytest.raises(MlflowException, match=f"{model.max_rows + 1} rows exceed the limit of {model.max_rows}"):
        model.predict(None, rows)
    assert len(model.predict(None, rows[: model.max_rows])) == model.max_rows


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    import mlflow

    root = tmp_path_factory.mktemp("serving")
    torch.manual_seed(0)
    encoder, decoder = build_encoder("vgg16_hed"), Decoder("vgg16_hed")
    torch.save({"name": "vgg16_hed", "state_dict": encoder.state_dict()}, root / "encoder.pt")
    save_decoder(decoder, root / "decoder.pt")
    model = AdaINStylizer(encoder, decoder).eval()
    with torch.no_grad():
        m, s = model.style_stats(torch.rand(1, 3, 32, 32))
    StyleBank(["stripes"], m, s, "vgg16_hed").save(root / "bank.pt")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("serve", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("serve")
    with mlflow.start_run():
        model_uri = log_serving_model(root / "encoder.pt", root / "decoder.pt", root / "bank.pt",
                                      Finish(**NETWORK_FINISH), MAX_PIXELS)
    from mlflow.pyfunc import scoring_server

    # `mlflow models serve -m URI --env-manager local` downloads the model and runs this command; here it
    # gets a listening socket bound to port 0, so the port read back is the server's and no one else's
    command, server_env = scoring_server.get_cmd(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(root)))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    env = {**server_env, "PATH": tool_env()["PATH"], "MLFLOW_TRACKING_URI": uri}
    log = open(root / "server.log", "w")  # noqa: SIM115 (closed after the server stops)
    proc = subprocess.Popen(
        [*shlex.split(command), "--fd", str(listener.fileno())], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, pass_fds=(listener.fileno(),),
    )
    listener.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def _post(base: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _photo(w: int, h: int) -> str:
    arr = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def _pixels(b64: str) -> np.ndarray:
    """A base64 image as RGB floats in [0, 1]."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.float32) / 255


def _rows(**row) -> dict:
    return {"dataframe_records": [row]}


@pytest.mark.integration
def test_posts_a_real_image_and_gets_a_stylised_image(server, tmp_path):
    style = encode_png(torch.rand(3, 32, 32))
    status, body = _post(server, _rows(content=_photo(50, 36), style=style, alpha=0.7))
    assert status == 200, body
    out = body["predictions"][0]
    img = Image.open(io.BytesIO(base64.b64decode(out["image"])))
    assert img.size == (50, 36) and (out["width"], out["height"]) == (50, 36)
    assert np.asarray(img).std() > 0
    status, body = _post(server, _rows(content=_photo(40, 40), style_name="stripes"))
    assert status == 200, body
    StyleBank(["x"], torch.rand(1, 512, 1, 1), torch.rand(1, 512, 1, 1) + 0.1, "vgg16_hed").save(tmp_path / "s.pt")
    status, body = _post(server, _rows(content=_photo(40, 40), style_stats=encode_file(tmp_path / "s.pt")))
    assert status == 200, body


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Ensure that input is a valid JSON formatted string"),
        (_rows(content=_b64(EPS), style_name="stripes"), "content: not a readable image of an accepted format"),
        (_rows(content=_photo(100, 100), style_name="stripes"), "exceeds max_pixels=4096"),
        (_rows(content="%%%", style_name="stripes"), "content: not valid base64"),
        (_rows(content=base64.b64encode(b"GIF89a junk").decode(), style_name="stripes"), "not a readable image"),
        (_rows(content=_photo(40, 40)), "give exactly one of style, style_stats, style_name"),
        (_rows(content=_photo(40, 40), style_name="monet"), "'monet' is not in the model's style bank"),
        (_rows(content=_photo(40, 40), style_name="stripes", alpha=3.0), "alpha 3.0 is out of range"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(server, body, message):
    status, reply = _post(server, body)
    assert 400 <= status < 500, reply
    assert message in reply.get("message", "")
    assert " --" not in reply.get("message", ""), "a REST client is shown a CLI flag it never typed"
    assert _post(server, _rows(content=_photo(24, 24), style_name="stripes"))[0] == 200  # still serving
