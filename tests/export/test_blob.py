"""compile_blob: offline default, pre-compiled blob validation, the online path against a local server."""

from __future__ import annotations

import email.parser
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from stylepipe.core.config import Params, deep_merge, parse_params
from stylepipe.export.myriad import blob as blob_mod
from stylepipe.export.myriad.blob import BLOB_NAME, BlobError, optimizer_params, run_compile_blob

from ..netutil import refusing_port

ROOT = Path(__file__).resolve().parents[2]


def make_params(**blob: Any) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    return parse_params(deep_merge(raw, {"export": {"height": 32, "width": 32}, "blob": blob}))


STYLES = yaml.safe_load((ROOT / "params.yaml").read_text())["train_johnson"]["styles"]
STAT = [1, 512, 1, 1]


def tiny_onnx(path: Path, extra_inputs: tuple[str, ...] = ()) -> None:
    """content [1,3,32,32] (+ extra [1,512,1,1] inputs, unused) -> stylized (Relu)."""
    inputs = [helper.make_tensor_value_info("content", TensorProto.FLOAT, [1, 3, 32, 32])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, STAT) for n in extra_inputs]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["content"], ["stylized"])],
        "tiny",
        inputs,
        [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.fixture
def onnx_dir(tmp_path: Path) -> Path:
    """Tiny stand-ins for adain_baked.onnx, adain_stats.onnx (+ style inputs) and ../johnson/<style>/."""
    d = tmp_path / "onnx"
    tiny_onnx(d / "adain_baked.onnx")
    tiny_onnx(d / "adain_stats.onnx", ("style_mean", "style_std"))
    for style in STYLES:
        tiny_onnx(tmp_path / "johnson" / style / f"johnson_{style}.onnx")
    return d


def compile_blob(params: Params, onnx_dir: Path, out: Path) -> dict[str, Any]:
    return run_compile_blob(params, onnx_dir, out, onnx_dir.parent / "johnson")


def test_disabled_records_no_blob(tmp_path: Path, onnx_dir: Path) -> None:
    rec = compile_blob(make_params(enabled=False, path=None), onnx_dir, tmp_path / "blob")
    saved = json.loads((tmp_path / "blob" / "blob.json").read_text())
    assert saved == rec
    assert rec["compiled"] is False and rec["blob"] is None and "offline" in rec["reason"]
    assert not (tmp_path / "blob" / BLOB_NAME).exists()


def test_invalid_blob_file_rejected(tmp_path: Path, onnx_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # blob.path is relative to the repo root, under blobs/
    bad = tmp_path / "blobs" / "bad.blob"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00not a blob" * 64)
    with pytest.raises(BlobError, match=r"bad\.blob.*not a readable Myriad X blob"):
        compile_blob(make_params(path="blobs/bad.blob"), onnx_dir, tmp_path / "blob")
    assert not (tmp_path / "blob").exists()
    with pytest.raises(BlobError, match="missing or empty"):
        compile_blob(make_params(path="blobs/nope.blob"), onnx_dir, tmp_path / "blob")


class Recorder(BaseHTTPRequestHandler):
    """Records each POST (query + multipart parts) and answers with the server's configured status."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg = email.parser.BytesParser().parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
        )
        parts = {
            p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
            for p in msg.get_payload()
        }
        self.server.requests.append({"path": self.path, "parts": parts})  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        payload = b"this is not a blob" if status == 200 else b"compile failed"
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests, srv.status = [], 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_online_request_carries_model_and_explicit_preprocessing(
    tmp_path: Path, onnx_dir: Path, server: ThreadingHTTPServer
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    params = make_params(enabled=True, shaves=5, openvino_version="2021.4", url=url, retries=0, timeout_s=5)
    # The server's answer is not a blob: the compiled file must be validated, not trusted.
    with pytest.raises(BlobError, match="not a readable Myriad X blob"):
        compile_blob(params, onnx_dir, tmp_path / "blob")
    assert len(server.requests) == 1  # type: ignore[attr-defined]
    req = server.requests[0]  # type: ignore[attr-defined]
    query = parse_qs(urlparse(req["path"]).query)
    assert urlparse(req["path"]).path == "/compile"
    assert query["version"] == ["2021.4"] and query["no_cache"] == ["True"]
    parts = req["parts"]
    assert parts["adain_baked.onnx"] == (onnx_dir / "adain_baked.onnx").read_bytes()
    assert parts["myriad_shaves"] == b"5" and parts["data_type"] == b"FP16"
    assert parts["myriad_params_advanced"] == b"-ip U8"
    config = yaml.safe_load(parts["config"])
    mo_args = config["model_optimizer_args"]
    for flag in optimizer_params(32, 32):
        assert flag in mo_args
    assert "--data_type=FP16" in mo_args
    assert "--reverse_input_channels" in mo_args and "--scale_values=[255,255,255]" in mo_args
    assert not any("127.5" in a for a in mo_args)  # blobconverter's default mean is overridden
    assert (
        not Path.home().joinpath(".cache/blobconverter", "adain_baked_openvino_2021.4_5shave.blob").exists()
    )


def test_online_server_error_is_clear(
    tmp_path: Path, onnx_dir: Path, server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blob_mod, "RETRY_DELAY_S", 0.0)
    server.status = 500  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{server.server_address[1]}"
    params = make_params(enabled=True, url=url, retries=1, timeout_s=5)
    with pytest.raises(BlobError, match=r"after 2 attempt\(s\).*500.*go online.*blob\.path"):
        compile_blob(params, onnx_dir, tmp_path / "blob")
    assert len(server.requests) == 2  # type: ignore[attr-defined]


def test_online_connection_refused_is_clear(tmp_path: Path, onnx_dir: Path) -> None:
    with refusing_port() as port:
        params = make_params(enabled=True, url=f"http://127.0.0.1:{port}", retries=0, timeout_s=5)
        with pytest.raises(BlobError, match=r"go online, or set blob\.path"):
            compile_blob(params, onnx_dir, tmp_path / "blob")


def test_every_model_is_requested_with_its_own_preprocessing(
    tmp_path: Path, onnx_dir: Path, server: ThreadingHTTPServer
) -> None:
    """Stats-input and Johnson models go through the same request code; the image input alone is U8."""
    url = f"http://127.0.0.1:{server.server_address[1]}"
    params = make_params(enabled=True, url=url, retries=0, timeout_s=5)
    sources = blob_mod.blob_sources(params, onnx_dir, onnx_dir.parent / "johnson")
    assert [p.name for p in sources] == ["adain_baked.onnx", "adain_stats.onnx"] + [
        f"johnson_{s}.onnx" for s in STYLES
    ]
    for src in sources[1:]:
        blob_mod.compile_online(src, tmp_path / "work", params)
    stats_req, *johnson_reqs = server.requests  # type: ignore[attr-defined]
    assert stats_req["parts"]["adain_stats.onnx"] == (onnx_dir / "adain_stats.onnx").read_bytes()
    assert stats_req["parts"]["myriad_params_advanced"] == b"-ip FP16 -iop content:U8"
    mo_args = yaml.safe_load(stats_req["parts"]["config"])["model_optimizer_args"]
    for flag in (
        "--input=content,style_mean,style_std",
        "--scale_values=content[255,255,255]",
        "--mean_values=content[0,0,0]",
        "--input_shape=[1,3,32,32],[1,512,1,1],[1,512,1,1]",
        "--reverse_input_channels",
    ):
        assert flag in mo_args
    for style, req in zip(STYLES, johnson_reqs, strict=True):
        assert f"johnson_{style}.onnx" in req["parts"] and req["parts"]["myriad_params_advanced"] == b"-ip U8"
        assert "--scale_values=[255,255,255]" in yaml.safe_load(req["parts"]["config"])["model_optimizer_args"]


def test_missing_exports_are_named(tmp_path: Path, onnx_dir: Path) -> None:
    (onnx_dir / "adain_stats.onnx").unlink()
    with pytest.raises(BlobError, match=r"not found: .*adain_stats\.onnx \(run export_onnx and export_johnson"):
        compile_blob(make_params(enabled=True, retries=0), onnx_dir, tmp_path / "blob")


def test_validation_matches_inputs_by_name() -> None:
    want = {"content": [1, 3, 32, 32], "style_mean": STAT, "style_std": STAT}
    assert blob_mod._io_fits({"content": [32, 32, 3, 1], "style_mean": STAT, "style_std": STAT}, want)
    assert not blob_mod._io_fits({"content": [1, 3, 32, 32], "style_mean": STAT}, want)
    assert not blob_mod._io_fits({"content": [1, 3, 64, 64], "style_mean": STAT, "style_std": STAT}, want)
    assert blob_mod._io_fits({"input.1": [1, 3, 32, 32]}, {"content": [1, 3, 32, 32]})
