"""The `compile_blob` stage: a Myriad X blob for the OAK-1, compiled online or given pre-compiled.

* blob.path set    -> validate that blob (inputs/outputs must fit the baked ONNX model) and use it.
* blob.enabled     -> compile adain_baked.onnx through Luxonis' blobconverter service, then validate.
* neither          -> record in blob.json that no blob was compiled and why (the offline default).

Camera frames reach the network as BGR U8 planar, so the compile request carries explicit Model
Optimizer preprocessing: reverse the channels (BGR -> RGB) and divide by 255, mean 0.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blobconverter
import onnx
import requests

from stylepipe import paths
from stylepipe.config import Params
from stylepipe.export.onnx import BAKED_ONNX
from stylepipe.io import atomic_dir, file_digest, write_json

BLOB_NAME = "adain_baked.blob"
RETRY_DELAY_S = 2.0
OFFLINE_HINT = "go online, or set blob.path to a pre-compiled blob (and blob.enabled: false) to work offline"


class BlobError(RuntimeError):
    """The blob could not be compiled, read, or does not fit the exported model."""


def optimizer_params(height: int, width: int) -> list[str]:
    """Model Optimizer flags turning camera BGR U8 [0, 255] frames into the model's RGB [0, 1] input."""
    return [
        "--reverse_input_channels",
        "--mean_values=[0,0,0]",
        "--scale_values=[255,255,255]",
        f"--input_shape=[1,3,{height},{width}]",
    ]


def onnx_io_shapes(onnx_path: Path) -> dict[str, dict[str, list[int]]]:
    """{'inputs': {name: dims}, 'outputs': {name: dims}} of an ONNX model's graph."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def dims(v: onnx.ValueInfoProto) -> list[int]:
        return [d.dim_value for d in v.type.tensor_type.shape.dim]

    return {
        "inputs": {v.name: dims(v) for v in graph.input if v.name not in inits},
        "outputs": {v.name: dims(v) for v in graph.output},
    }


def _fits(blob_dims: list[int], want: list[int]) -> bool:
    """depthai may report dims innermost-first (W, H, C, N); accept either order."""
    return list(blob_dims) in (list(want), list(reversed(want)))


def validate_blob(blob_path: Path, onnx_path: Path) -> dict[str, Any]:
    """Read a blob with depthai and check its single input and its output against the ONNX model."""
    import depthai as dai

    if not blob_path.is_file() or blob_path.stat().st_size == 0:
        raise BlobError(f"{blob_path}: blob file is missing or empty")
    try:
        blob = dai.OpenVINO.Blob(str(blob_path))
    except Exception as err:
        raise BlobError(f"{blob_path}: not a readable Myriad X blob ({err})") from None
    want = onnx_io_shapes(onnx_path)
    ins = {k: list(v.dims) for k, v in blob.networkInputs.items()}
    outs = {k: list(v.dims) for k, v in blob.networkOutputs.items()}
    want_in, want_out = next(iter(want["inputs"].values())), next(iter(want["outputs"].values()))
    if len(ins) != 1 or not _fits(next(iter(ins.values())), want_in):
        raise BlobError(f"{blob_path}: blob inputs {ins} do not match {onnx_path.name} input {want_in}")
    if len(outs) != 1 or not _fits(next(iter(outs.values())), want_out):
        raise BlobError(f"{blob_path}: blob outputs {outs} do not match {onnx_path.name} output {want_out}")
    return {
        "inputs": ins,
        "outputs": outs,
        "num_shaves": int(blob.numShaves),
        "openvino_version": str(blob.version),
        "bytes": blob_path.stat().st_size,
        "sha256": file_digest(blob_path),
    }


class _TimedRequests:
    """Stand-in for the `requests` module inside blobconverter that adds a timeout to every call."""

    def __init__(self, timeout: float) -> None:
        self.get = functools.partial(requests.get, timeout=timeout)
        self.post = functools.partial(requests.post, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(requests, name)


def _no_s3(*_args: Any, **_kwargs: Any) -> None:
    raise FileNotFoundError("public S3 blob cache bypassed: always compile fresh")


@contextlib.contextmanager
def _blobconverter_session(index_dir: Path, timeout: float) -> Iterator[None]:
    """Within the block: HTTP timeouts, no public S3 cache lookup, blobconverter's index in index_dir."""
    defaults = getattr(blobconverter, "__defaults")  # module-level dict (no name mangling at module level)
    saved = {
        "requests": blobconverter.requests,
        "s3": getattr(blobconverter, "__download_from_s3_bucket"),
        "output_dir": defaults["output_dir"],
        "silent": defaults["silent"],
    }
    blobconverter.requests = _TimedRequests(timeout)
    setattr(blobconverter, "__download_from_s3_bucket", _no_s3)
    defaults["output_dir"], defaults["silent"] = index_dir, True
    try:
        yield
    finally:
        blobconverter.requests = saved["requests"]
        setattr(blobconverter, "__download_from_s3_bucket", saved["s3"])
        defaults["output_dir"], defaults["silent"] = saved["output_dir"], saved["silent"]


def _retryable(err: Exception) -> bool:
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return err.response.status_code >= 500 or err.response.status_code == 429
    return isinstance(err, requests.ConnectionError | requests.Timeout)


def compile_online(onnx_path: Path, work_dir: Path, params: Params) -> Path:
    """blobconverter.from_onnx with explicit preprocessing, retries and a clear BlobError on failure."""
    cfg, exp = params.blob, params.export
    out = work_dir / f"compile-{file_digest(onnx_path)[:16]}"
    kwargs: dict[str, Any] = {
        "data_type": "FP16",
        "optimizer_params": optimizer_params(exp.height, exp.width),
        "compile_params": ["-ip U8"],
        "shaves": cfg.shaves,
        "version": cfg.openvino_version,
        "output_dir": str(out),
        "use_cache": False,
        "url": cfg.url.rstrip("/"),
    }
    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(RETRY_DELAY_S * attempt)
        try:
            with _blobconverter_session(out, cfg.timeout_s):
                return Path(blobconverter.from_onnx(str(onnx_path), **kwargs))
        except (requests.RequestException, OSError) as err:
            last = err
            if not _retryable(err):
                break
    raise BlobError(
        f"blob compilation of {onnx_path} failed after {attempt + 1} attempt(s): {last}. {OFFLINE_HINT}"
    )


def run_compile_blob(
    params: Params,
    onnx_dir: Path = paths.ONNX_DIR,
    out_dir: Path = paths.BLOB_DIR,
) -> dict[str, Any]:
    """Produce out_dir/adain_baked.blob (+ blob.json), or a blob.json saying why there is none."""
    cfg = params.blob
    onnx_path = onnx_dir / BAKED_ONNX
    record: dict[str, Any] = {
        "shaves": cfg.shaves,
        "openvino_version": cfg.openvino_version,
        "onnx": str(onnx_path),
        "blob": None,
    }
    with atomic_dir(out_dir) as tmp:
        if cfg.path is None and not cfg.enabled:
            record.update(
                compiled=False,
                source="none",
                reason="blob.enabled is false and no blob.path is set (offline default): "
                "the OAK pipeline is packaged without a blob",
            )
        else:
            if not onnx_path.is_file():
                raise BlobError(f"{onnx_path}: not found (run the export_onnx stage first)")
            if cfg.path is not None:
                src, record["source"] = Path(cfg.path), "path"
            else:
                src, record["source"] = compile_online(onnx_path, tmp, params), "blobconverter"
            record["validation"] = validate_blob(src, onnx_path)
            shutil.copyfile(src, tmp / BLOB_NAME)
            for leftover in tmp.glob("compile-*"):
                shutil.rmtree(leftover, ignore_errors=True)
            record.update(
                compiled=record["source"] == "blobconverter",
                blob=BLOB_NAME,
                optimizer_params=optimizer_params(params.export.height, params.export.width),
            )
        write_json(tmp / "blob.json", record)
    return record
