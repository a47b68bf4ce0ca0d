"""A trained AdaIN model as a self-contained folder, and the Python API over it (`stylepipe.load`).

The folder holds the encoder and decoder weights, the style bank, the OpenVINO IR pair made from exactly
those weights (and its INT8 copy when asked for), and `model.json`: the finishing settings and the sha256 of
every file. Loading checks every file before use, so a missing or altered file is an error naming it; the
folder needs no params.yaml and works from any directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stylepipe.adain.engine import Engine, Finish, StyleTarget
from stylepipe.adain.fast import torch_engine
from stylepipe.adain.ir import OpenVINOBackend, check_source, ir_files, quantize_ir, write_ir
from stylepipe.adain.model import load_stylizer
from stylepipe.core.errors import InputError
from stylepipe.core.io import atomic_dir, file_digest, write_json
from stylepipe.core.runtime import Runtime
from stylepipe.core.viz import to_pil
from stylepipe.data.datasets import image_to_tensor
from stylepipe.nn.functional import adain
from stylepipe.nn.statistics import StatsOrigin, StyleBank

RECORD = "model.json"
FORMAT = "stylepipe.adain_model/1"
IR_DIR, INT8_DIR = "openvino", "openvino_int8"
BACKENDS = ("auto", "torch", "openvino")


class ModelFolderError(InputError):
    """A model folder is incomplete or altered, or an option cannot be served; the message names the file."""


def write_model_folder(out_dir: Path, encoder: Path, decoder: Path, bank: Path, finish: Finish,
                       calibration: Sequence[torch.Tensor] = ()) -> dict[str, Any]:
    """Assemble the folder atomically: copies of the weights and the bank, the IR pair (and its INT8 copy
    calibrated on `calibration`, [1, 3, H, W] content images, when any are given: the decoder on their
    AdaIN targets towards the bank's styles in turn, what it decodes in use), model.json."""
    model = load_stylizer(encoder, decoder)
    styles = StyleBank.load_trained(bank, StatsOrigin.of(model))
    with atomic_dir(out_dir) as tmp:
        for source, name in ((encoder, "encoder.pt"), (decoder, "decoder.pt"), (bank, "style_bank.pt")):
            shutil.copyfile(source, tmp / name)
        source = {"encoder_sha256": file_digest(tmp / "encoder.pt"), "decoder_sha256": file_digest(tmp / "decoder.pt")}
        write_ir(model.encoder, model.decoder, tmp / IR_DIR, source)
        if calibration:
            with torch.no_grad():
                targets = [adain(model.encoder.encode(c), styles.mean[i % len(styles)][None],
                                 styles.std[i % len(styles)][None]) for i, c in enumerate(calibration)]
            quantize_ir(tmp / IR_DIR, tmp / INT8_DIR, calibration, targets)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        record = {"format": FORMAT, "encoder": model.encoder.spec.name, "layer": model.layer,
                  "decoder_width": model.decoder.width, "finish": finish.record(),
                  "files": {name: file_digest(tmp / name) for name in files}}
        write_json(tmp / RECORD, record)
    return record


def read_record(folder: Path) -> dict[str, Any]:
    """model.json, with every file it lists present and unaltered."""
    import json

    path = folder / RECORD
    if not path.is_file():
        raise ModelFolderError(f"{path}: not found ({folder} is not a stylepipe model folder)")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"{path}: not readable ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: expected format {FORMAT!r}")
    for name, digest in record["files"].items():
        file = folder / name
        if not file.is_file():
            raise ModelFolderError(f"{file}: missing from the model folder")
        if file_digest(file) != digest:
            raise ModelFolderError(f"{file}: altered (its sha256 differs from {path}'s record)")
    return record


def check_made_from(folder: Path, sources: dict[str, Path]) -> None:
    """Refuse a folder whose copies differ from `sources` ({name in the folder: the file it copies}): the
    pipeline's folder after its weights were retrained without re-running the package stage."""
    files = read_record(folder)["files"]
    for name, source in sources.items():
        if source.is_file() and files.get(name) != file_digest(source):
            raise ModelFolderError(f"{folder / name}: older than {source} (it holds other weights): the package "
                                   "stage brings the folder up to date (`dvc repro package`)")


class Model:
    """A loaded model folder: `stylize` an image, `stylize_video` a video, through one engine."""

    def __init__(self, folder: Path, engine: Engine, bank: StyleBank) -> None:
        self.folder, self.engine, self.bank = folder, engine, bank

    def _style(self, style: Any) -> StyleTarget:
        if isinstance(style, str) and style in self.bank.names:
            one = self.bank.select([style], str(self.folder / "style_bank.pt"))
            return StyleTarget(one.mean, one.std, one.palette)
        one = self.engine.style_bank(["style"], [_as_tensor(style, "style")])
        return StyleTarget(one.mean, one.std, one.palette)

    @torch.no_grad()
    def stylize(self, image: Any, style: Any, alpha: float = 1.0) -> Image.Image:
        """`image` (a path, a PIL image or an HxWx3 uint8 array) in the style of `style` (the same kinds, or a
        style name of the model's bank) -> a PIL image of the same size."""
        from stylepipe.apply import apply_padded

        if not 0.0 <= alpha <= 1.0:
            raise ModelFolderError(f"alpha {alpha} is out of range: expected 0..1")
        target = self._style(style)
        out = apply_padded(lambda x: self.engine.frame(x, target, alpha).cpu(), _as_tensor(image, "image"))
        return to_pil(out)

    def stylize_video(self, source: str | Path, output: str | Path, style: Any, alpha: float = 1.0) -> dict:
        """Every frame of the video `source` stylised into the .mp4 `output` (audio copied), steadied as
        `stylepipe stylize` does by default (docs/video.md)."""
        from stylepipe.adain.video import DECODED_BLEND, FEATURE_BLEND, Smoothing, StableAdaIN
        from stylepipe.apply import FLOW_BLEND, run_stylizer

        if not 0.0 <= alpha <= 1.0:
            raise ModelFolderError(f"alpha {alpha} is out of range: expected 0..1")
        stylizer = StableAdaIN(self.engine, self._style(style), alpha, Smoothing(decoded=DECODED_BLEND,
                                                                                 features=FEATURE_BLEND))
        return run_stylizer(Path(source), Path(output), stylizer, progress=False, flow_blend=FLOW_BLEND)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, str | Path):
        from stylepipe.apply import read_image

        return read_image(Path(value))
    if isinstance(value, Image.Image):
        return image_to_tensor(value)
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 3 and value.dtype == np.uint8:
        return image_to_tensor(Image.fromarray(value))
    raise ModelFolderError(f"{what}: expected a path, a PIL image or an HxWx3 uint8 array, got {type(value).__name__}")


def load_model(folder: str | Path, backend: str = "auto", precision: str = "default",
               device: str = "auto") -> Model:
    """The model in `folder` on `backend`: `auto` picks OpenVINO on a CPU (the folder's IR is checked to be
    made from its weights) and torch on CUDA."""
    folder = Path(folder)
    if backend not in BACKENDS:
        raise ModelFolderError(f"backend {backend!r} is not supported: expected one of {list(BACKENDS)}")
    record = read_record(folder)
    finish = Finish(**record["finish"])
    model = load_stylizer(folder / "encoder.pt", folder / "decoder.pt")
    bank = StyleBank.load_trained(folder / "style_bank.pt", StatsOrigin.of(model))
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if backend == "auto":
        backend = "torch" if cuda else "openvino"
    if backend == "torch":
        rt = Runtime(torch.device("cuda" if cuda else "cpu"), bf16=cuda or precision == "bf16",
                     channels_last=False, compile=False)
        return Model(folder, torch_engine(model, rt, finish), bank)
    ir_dir = folder / (INT8_DIR if precision == "int8" else IR_DIR)
    if not all(f.is_file() for f in ir_files(ir_dir)):
        maker = ("the package stage with package.calibration_images > 0, or write_model_folder with calibration "
                 "images" if precision == "int8" else "the package stage, or write_model_folder")
        raise ModelFolderError(f"{ir_dir}: no {'INT8 ' if precision == 'int8' else ''}OpenVINO IR in the model "
                               f"folder ({maker} makes it)")
    source = {"encoder_sha256": file_digest(folder / "encoder.pt"),
              "decoder_sha256": file_digest(folder / "decoder.pt")}
    check_source(ir_dir, source)
    engine = Engine(OpenVINOBackend(ir_dir, precision), StatsOrigin.of(model), model.encoder.stride, finish)
    return Model(folder, engine, bank)
