"""The OpenVINO backend of the AdaIN engine, on the CPU: the encoder and the decoder as two IRs.

The IRs keep float32 weights (parity with torch within 1e-4 at `f32`) and record the sha256 of the
encoder and decoder files they were converted from (rt_info `stylepipe/encoder_sha256`, `.../decoder_sha256`),
so an IR is used only with exactly those weights. Their input size is free: each frame size is reshaped and
compiled once, then cached. Precisions: `default` (the CPU plugin's choice: bf16 on CPUs with AVX-512 BF16 or
AMX, f32 elsewhere), `f32`, `bf16` (INFERENCE_PRECISION_HINT), and `int8` (the IRs quantised by NNCF after
training, `quantize_ir`, run at the plugin's default for the layers that stay in floating point).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from torch import nn

from stylepipe.core.errors import InputError
from stylepipe.nn.encoders import VGGEncoder

ENCODER_XML = "encoder.xml"
DECODER_XML = "decoder.xml"
PRECISIONS = ("default", "f32", "bf16", "int8")
RT_KEY = "stylepipe"


class IRError(InputError):
    """An IR is missing, unreadable or was made from other weights; the message names the file."""


class _Encode(nn.Module):
    """The encoder's `encode` as a module's forward, for conversion."""

    def __init__(self, encoder: VGGEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(x)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """OpenVINO's PyTorch frontend traces with torch.jit, whose deprecation warning concerns OpenVINO, not the
    user converting a model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.trace", FutureWarning)
        yield


def ir_files(ir_dir: Path) -> tuple[Path, ...]:
    """The files of the engine's IR pair in `ir_dir`."""
    return tuple(ir_dir / f"{stem}.{ext}" for stem in ("encoder", "decoder") for ext in ("xml", "bin"))


@torch.no_grad()
def write_ir(encoder: VGGEncoder, decoder: nn.Module, out_dir: Path, source: dict[str, str],
             example_size: int = 64) -> list[Path]:
    """Convert the encoder (cut at the AdaIN layer) and the decoder to IR in `out_dir` (float32 weights,
    free height and width), recording `source` (e.g. {"encoder_sha256": ..., "decoder_sha256": ...})."""
    out_dir.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, example_size, example_size, generator=torch.Generator().manual_seed(0))
    free = ov.PartialShape([1, 3, -1, -1])
    feat = encoder.encode(x)
    with _quiet_tracing():
        enc = ov.convert_model(_Encode(encoder.eval()), example_input=x, input=[free])
        dec = ov.convert_model(decoder.eval(), example_input=feat,
                               input=[ov.PartialShape([1, feat.shape[1], -1, -1])])
    written = []
    for model, name in ((enc, ENCODER_XML), (dec, DECODER_XML)):
        for key, value in source.items():
            model.set_rt_info(value, [RT_KEY, key])
        ov.save_model(model, str(out_dir / name), compress_to_fp16=False)
        written.append(out_dir / name)
    return written


def ir_source(xml: Path) -> dict[str, str]:
    """What an IR records of the weights it was made from (empty for an IR without the record)."""
    model = _read(xml)
    if not model.has_rt_info([RT_KEY]):
        return {}
    return {key: model.get_rt_info([RT_KEY, key]).astype(str) for key in ("encoder_sha256", "decoder_sha256")
            if model.has_rt_info([RT_KEY, key])}


def _read(xml: Path) -> ov.Model:
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        missing = xml if not xml.is_file() else xml.with_suffix(".bin")
        raise IRError(f"{missing}: OpenVINO IR file not found")
    try:
        return ov.Core().read_model(str(xml))
    except RuntimeError as err:
        raise IRError(f"{xml}: not a readable OpenVINO IR ({str(err).splitlines()[0]})") from None


def check_source(ir_dir: Path, expected: dict[str, str]) -> None:
    """Both IRs of `ir_dir` must record exactly `expected` (the weights' digests): a stale or foreign IR is
    an error naming it."""
    for xml in (ir_dir / ENCODER_XML, ir_dir / DECODER_XML):
        recorded = ir_source(xml)
        if recorded != expected:
            raise IRError(f"{xml}: made from other weights than this model's (records {recorded or 'nothing'}, "
                          f"the model's files are {expected}): re-export it from these weights")


class OpenVINOBackend:
    """`encode` / `decode` through the IR pair in `ir_dir`, compiled for the CPU once per input shape."""

    name = "openvino"
    device = torch.device("cpu")

    def __init__(self, ir_dir: Path, precision: str = "default") -> None:
        if precision not in PRECISIONS:
            raise IRError(f"precision {precision!r} is not supported: expected one of {list(PRECISIONS)}")
        self.precision, self.ir_dir = precision, ir_dir
        self.core = ov.Core()
        self.models = {"encoder": _read(ir_dir / ENCODER_XML), "decoder": _read(ir_dir / DECODER_XML)}
        self.config = {"INFERENCE_PRECISION_HINT": precision} if precision in ("f32", "bf16") else {}
        self._compiled: dict[tuple[str, tuple[int, ...]], ov.CompiledModel] = {}

    def _run(self, which: str, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        compiled = self._compiled.get((which, shape))
        if compiled is None:
            model = self.models[which].clone()
            model.reshape({model.input(0): ov.PartialShape(list(shape))})
            compiled = self._compiled[(which, shape)] = self.core.compile_model(model, "CPU", self.config)
        data = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.array(compiled(data)[compiled.output(0)], copy=True))

    def encode(self, content: torch.Tensor) -> torch.Tensor:
        return self._run("encoder", content)

    def decode(self, target: torch.Tensor) -> torch.Tensor:
        return self._run("decoder", target)


def quantize_ir(ir_dir: Path, out_dir: Path, contents: Sequence[torch.Tensor],
                targets: Sequence[torch.Tensor]) -> list[Path]:
    """INT8 copies of the IR pair (NNCF post-training quantisation) in `out_dir`: the encoder calibrated on
    `contents` ([1, 3, H, W] images), the decoder on `targets` (AdaIN targets of such images: what it
    decodes). The record of the source weights is kept."""
    import nncf

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, samples in ((ENCODER_XML, contents), (DECODER_XML, targets)):
        model = _read(ir_dir / name)
        data = nncf.Dataset([np.ascontiguousarray(s.float().numpy()) for s in samples])
        quantized = nncf.quantize(model, data, subset_size=len(samples))
        for key, value in ir_source(ir_dir / name).items():
            quantized.set_rt_info(value, [RT_KEY, key])
        ov.save_model(quantized, str(out_dir / name), compress_to_fp16=False)
        written.append(out_dir / name)
    return written
