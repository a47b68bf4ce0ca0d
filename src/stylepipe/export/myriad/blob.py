"""The `compile_blob` stage: Myriad X blobs for the OAK-1, compiled online or given pre-compiled.

* blob.path set    -> validate that blob (inputs/outputs must fit adain_baked.onnx) and use it.
* blob.enabled     -> compile every exported model through Luxonis' blobconverter service, then validate
                      each: adain_baked (one style), adain_stats (styles switched on the device through its
                      style_mean/style_std inputs) and each johnson_<style> (train_johnson.styles).
* neither          -> record in blob.json that no blob was compiled and why (the offline default).

Camera frames reach the network as BGR U8 planar, so each compile request carries explicit Model
Optimizer preprocessing of the image input `content`: reverse the channels (BGR -> RGB) and divide by 255,
mean 0. The style statistics inputs stay FP16, unscaled.
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

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.errors import StylepipeError
from stylepipe.core.io import atomic_dir, file_digest, write_json
from stylepipe.core.paths import BAKED_ONNX, STATS_ONNX, johnson_onnx_name

BLOB_NAME = "adain_baked.blob"
IMAGE_INPUT = "content"
RETRY_DELAY_S = 2.0
OFFLINE_HINT = "go online, or set blob.path to a pre-compiled blob (and blob.enabled: false) to work offline"


class BlobError(StylepipeError, RuntimeError):
    """The blob could not be compiled, read, or does not fit the exported model."""


def optimizer_params(height: int, width: int, inputs: dict[str, list[int]] | None = None) -> list[str]:
    """Model Optimizer flags turning camera BGR U8 [0, 255] frames into the model's RGB [0, 1] `content`;
    `inputs` (name -> dims, from onnx_io_shapes) with more than the image names each input's shape."""
    image = f"[1,3,{height},{width}]"
    if inputs is None or list(inputs) == [IMAGE_INPUT]:
        return ["--reverse_input_channels", "--mean_values=[0,0,0]", "--scale_values=[255,255,255]",
                f"--input_shape={image}"]  # fmt: skip
    shapes = [image if n == IMAGE_INPUT else "[" + ",".join(map(str, d)) + "]" for n, d in inputs.items()]
    return [
        "--reverse_input_channels",  # applies to 3-channel inputs only: the statistics are left alone
        f"--input={','.join(inputs)}",
        f"--mean_values={IMAGE_INPUT}[0,0,0]",
        f"--scale_values={IMAGE_INPUT}[255,255,255]",
        f"--input_shape={','.join(shapes)}",
    ]


def compile_params(inputs: dict[str, list[int]]) -> list[str]:
    """compile_tool flags: the camera image arrives as U8; other inputs (style statistics) as FP16."""
    if list(inputs) == [IMAGE_INPUT]:
        return ["-ip U8"]
    return [f"-ip FP16 -iop {IMAGE_INPUT}:U8"]


def blob_sources(params: Params, onnx_dir: Path, johnson_dir: Path) -> list[Path]:
    """The ONNX models compiled online: AdaIN baked and stats-input, and each listed Johnson style."""
    styles = params.train_johnson.styles
    return [onnx_dir / BAKED_ONNX, onnx_dir / STATS_ONNX, *(johnson_dir / s / johnson_onnx_name(s) for s in styles)]


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


def _io_fits(got: dict[str, list[int]], want: dict[str, list[int]]) -> bool:
    """Same count; by name where the names agree, else (one tensor each side) by position."""
    if len(got) != len(want):
        return False
    if set(got) == set(want):
        return all(_fits(got[n], want[n]) for n in want)
    return len(want) == 1 and _fits(next(iter(got.values())), next(iter(want.values())))


def validate_blob(blob_path: Path, onnx_path: Path) -> dict[str, Any]:
    """Read a blob with depthai and check its inputs and outputs against the ONNX model's."""
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
    for kind, got in (("inputs", ins), ("outputs", outs)):
        if not _io_fits(got, want[kind]):
            raise BlobError(f"{blob_path}: blob {kind} {got} do not match {onnx_path.name} {kind} {want[kind]}")
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
    inputs = onnx_io_shapes(onnx_path)["inputs"]
    out = work_dir / f"compile-{file_digest(onnx_path)[:16]}"
    kwargs: dict[str, Any] = {
        "data_type": "FP16",
        "optimizer_params": optimizer_params(exp.height, exp.width, inputs),
        "compile_params": compile_params(inputs),
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


def _compile_all(params: Params, sources: list[Path], tmp: Path) -> dict[str, Any]:
    """Compile and validate each source into tmp/<stem>.blob; {blob file name: its record}."""
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise BlobError(f"not found: {', '.join(missing)} (run export_onnx and export_johnson first)")
    return {f"{src.stem}.blob": _adopt(compile_online(src, tmp, params), src, tmp / f"{src.stem}.blob", params)
            for src in sources}  # fmt: skip


def _adopt(blob: Path, onnx_path: Path, dest: Path, params: Params) -> dict[str, Any]:
    """Validate `blob` against its ONNX model, copy it to dest; the record of that blob."""
    inputs = onnx_io_shapes(onnx_path)["inputs"]
    entry = {
        "onnx": str(onnx_path),
        "optimizer_params": optimizer_params(params.export.height, params.export.width, inputs),
        "validation": validate_blob(blob, onnx_path),
    }
    shutil.copyfile(blob, dest)
    return entry


def run_compile_blob(
    params: Params,
    onnx_dir: Path = paths.ONNX_DIR,
    out_dir: Path = paths.BLOB_DIR,
    johnson_dir: Path = paths.JOHNSON_EXPORT_DIR,
) -> dict[str, Any]:
    """Produce out_dir/<model>.blob files (+ blob.json), or a blob.json saying why there are none."""
    cfg = params.blob
    onnx_path = onnx_dir / BAKED_ONNX
    record: dict[str, Any] = {
        "shaves": cfg.shaves,
        "openvino_version": cfg.openvino_version,
        "onnx": str(onnx_path),
        "blob": None,
        "models": {},
    }
    with atomic_dir(out_dir) as tmp:
        if cfg.path is None and not cfg.enabled:
            record.update(
                compiled=False,
                source="none",
                reason="blob.enabled is false and no blob.path is set (offline default): "
                "the OAK pipeline is packaged without a blob",
            )
        elif cfg.path is not None:
            if not onnx_path.is_file():
                raise BlobError(f"{onnx_path}: not found (run the export_onnx stage first)")
            entry = _adopt(Path(cfg.path), onnx_path, tmp / BLOB_NAME, params)
            record.update(compiled=False, source="path", blob=BLOB_NAME, models={BLOB_NAME: entry})
        else:
            models = _compile_all(params, blob_sources(params, onnx_dir, johnson_dir), tmp)
            record.update(compiled=True, source="blobconverter", blob=BLOB_NAME, models=models)
        for leftover in tmp.glob("compile-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        write_json(tmp / "blob.json", record)
    return record
