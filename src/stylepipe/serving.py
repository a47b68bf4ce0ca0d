"""The trained AdaIN model as an MLflow pyfunc model, servable over REST with `mlflow models serve`.

Request: a DataFrame (`dataframe_split` / `dataframe_records` JSON), one row per content image:
  content      base64 PNG/JPEG/... bytes (required)
  style        base64 style image, or
  style_stats  base64 of a style statistics file (`stylepipe stylize --save-style-stats`), or
  style_name   a style of the style bank packaged with the model (models/adain/style_bank.pt)
  alpha        0..1 (default 1)
Images are JPEG, PNG, BMP, WebP, TIFF or GIF (no other decoder is ever tried), turned upright by their
EXIF orientation as the CLI does. A request holds at most `max_rows` rows (model_config, default 16).
Response: one row per image: `image` (base64 PNG of the stylised image, same size as the content),
`width`, `height`. Bad requests (missing/undecodable fields, other image formats, images over
`max_pixels`, more rows than `max_rows`, unknown style names, style statistics of the wrong shape or with
NaN/Inf, alpha out of range) raise MlflowException INVALID_PARAMETER_VALUE: HTTP 400 with the message.

The evaluate stage logs it (`log_serving_model`), beside the metrics of the same decoder.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

import stylepipe
from stylepipe.core.errors import InputError
from stylepipe.core.viz import to_pil
from stylepipe.data.datasets import image_to_tensor

if TYPE_CHECKING:
    from stylepipe.adain.engine import Finish

MODEL_NAME = "model"
DEFAULT_MAX_PIXELS = 3840 * 2160
DEFAULT_MAX_ROWS = 16  # with max_pixels, bounds the memory and time one request can take
STYLE_SIZE = 512
PACKAGES = ("torch", "torchvision", "numpy", "pillow", "pandas", "mlflow", "pydantic", "pyyaml", "tqdm", "av",
            "scikit-image", "psutil")


def _bad_request(message: str) -> Exception:
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(message)


def encode_png(img: torch.Tensor) -> str:
    """[3, H, W] in [0, 1] -> base64 PNG."""
    buf = io.BytesIO()
    to_pil(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_file(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _b64(value: Any, what: str, max_chars: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise _bad_request(f"{what}: expected a base64 string")
    if len(value) > max_chars:
        raise _bad_request(f"{what}: {len(value)} base64 characters exceed the limit of {max_chars}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f"{what}: not valid base64") from None


def decode_image(value: Any, what: str, max_pixels: int) -> torch.Tensor:
    """base64 image of an accepted format -> [3, H, W], upright as the CLI reads it (EXIF orientation);
    the size is checked from the header before decoding the pixels."""
    from stylepipe.core.media import NOT_ACCEPTED, open_allowed, upright_rgb

    data = _b64(value, what, max_chars=4 * (16 * max_pixels + 4096) // 3)
    try:
        with open_allowed(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise _bad_request(f"{what}: {img.width}x{img.height} image exceeds max_pixels={max_pixels}")
            rgb = upright_rgb(img)
    except UnidentifiedImageError:
        raise _bad_request(f"{what}: {NOT_ACCEPTED}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise _bad_request(f"{what}: not a readable image ({err})") from None
    if min(rgb.size) < 16:
        raise _bad_request(f"{what}: image {rgb.width}x{rgb.height} is too small (need at least 16 px)")
    return image_to_tensor(rgb)


class AdaINPyfunc(mlflow.pyfunc.PythonModel):
    """AdaIN stylisation of base64 images (see the module docstring for the request format)."""

    def load_context(self, context) -> None:
        from stylepipe.adain.model import load_stylizer
        from stylepipe.core.runtime import Runtime
        from stylepipe.nn.statistics import StatsOrigin, StyleBank

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_stylizer(context.artifacts["encoder"], context.artifacts["decoder"]).to(self.device)
        bank = context.artifacts.get("style_bank")
        self.bank = StyleBank.load(Path(bank)) if bank else None
        if self.bank is not None:  # a bank of another AdaIN layer fails at load, not per request
            self.bank.check_fits(StatsOrigin.of(self.model), bank, "rebuild the bank with this model")
        config = context.model_config or {}
        self.max_pixels = int(config.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.max_rows = int(config.get("max_rows", DEFAULT_MAX_ROWS))
        from stylepipe.adain.engine import Finish
        from stylepipe.adain.fast import torch_engine

        runtime = Runtime(self.device, bf16=False, channels_last=False, compile=False)
        if "finish" not in config:
            raise InputError("the serving model records no finishing settings (logged before they moved to "
                               "params finish): log it again with evaluate")
        finish = Finish(**config["finish"])
        self.engine = torch_engine(self.model, runtime, finish)

    def _style(self, row: dict) -> Any:
        from stylepipe.nn.statistics import StatsOrigin, StyleBank, StyleBankError

        given = [k for k in ("style", "style_stats", "style_name") if isinstance(row.get(k), str) and row[k]]
        if len(given) != 1:
            raise _bad_request(f"give exactly one of style, style_stats, style_name (got {given or 'none'})")
        if given[0] == "style":
            image = decode_image(row["style"], "style", self.max_pixels)
            from stylepipe.data.datasets import resize_short

            image = image_to_tensor(resize_short(to_pil(image), STYLE_SIZE))
            return self.engine.style_bank(["request"], [image])
        if given[0] == "style_name":
            if self.bank is None or row["style_name"] not in self.bank.names:
                names = self.bank.names if self.bank is not None else []
                raise _bad_request(f"style_name {row['style_name']!r} is not in the model's style bank {names}")
            return self.bank.select([row["style_name"]], "style_name")
        data = _b64(row["style_stats"], "style_stats", max_chars=16 << 20)
        try:
            stats = StyleBank.read(io.BytesIO(data), "style_stats")
            stats.check_fits(StatsOrigin.of(self.model), "style_stats", "send the style image as `style` instead")
        except StyleBankError as err:
            raise _bad_request(str(err)) from None
        if len(stats) != 1:
            raise _bad_request(f"style_stats: expected one style, the file has {len(stats)}")
        return stats

    @torch.no_grad()
    def _stylise_row(self, row: dict) -> dict:
        from stylepipe.adain.stylize import AdaINStylize, StylizeOptions
        from stylepipe.apply import StylizeError, apply_padded

        content = decode_image(row.get("content"), "content", self.max_pixels)
        alpha = row.get("alpha")
        alpha = 1.0 if alpha is None or (isinstance(alpha, float) and np.isnan(alpha)) else alpha
        try:
            opts = StylizeOptions(alpha=float(alpha))
            stylizer = AdaINStylize(self.engine, opts, stats=self._style(row))
            out = apply_padded(stylizer, content)
        except (StylizeError, TypeError, ValueError) as err:
            raise _bad_request(str(err)) from None
        return {"image": encode_png(out), "width": out.shape[2], "height": out.shape[1]}

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or model_input.empty:
            raise _bad_request("expected a non-empty table with a `content` column")
        if len(model_input) > self.max_rows:
            raise _bad_request(f"{len(model_input)} rows exceed the limit of {self.max_rows} images per request: "
                               "split the request")
        rows = []
        for i, row in enumerate(model_input.to_dict(orient="records")):
            try:
                rows.append(self._stylise_row(row))
            except Exception as err:
                if type(err).__name__ == "MlflowException":
                    err.message = f"row {i}: {err.message}"
                raise
        return pd.DataFrame(rows, columns=["image", "width", "height"])


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([
        ColSpec("string", "content"),
        ColSpec("string", "style", required=False),
        ColSpec("string", "style_stats", required=False),
        ColSpec("string", "style_name", required=False),
        ColSpec("double", "alpha", required=False),
    ])
    outputs = Schema([ColSpec("string", "image"), ColSpec("long", "width"), ColSpec("long", "height")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(size: int = 32) -> pd.DataFrame:
    """A tiny real request: a gradient content image and a striped style image, alpha 0.8."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    content = torch.stack([x, y, 1 - x])
    style = torch.stack([(x * 8).frac(), 0.5 * torch.ones_like(x), (y * 4).frac()])
    return pd.DataFrame([{"content": encode_png(content), "style": encode_png(style), "alpha": 0.8}])


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES]


def log_serving_model(encoder: Path, decoder: Path, style_bank: Path | None, finish: Finish,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """Log the pyfunc model to the active MLflow run with its finishing settings; returns its model URI."""
    artifacts = {"encoder": str(encoder), "decoder": str(decoder)}
    if style_bank is not None and Path(style_bank).is_file():
        artifacts["style_bank"] = str(style_bank)
    info = mlflow.pyfunc.log_model(
        name=MODEL_NAME, python_model=str(Path(__file__).with_name("serving_model.py")), artifacts=artifacts,
        signature=signature(),
        input_example=input_example(), code_paths=[str(Path(stylepipe.__file__).parent)],
        pip_requirements=requirements(), model_config={"max_pixels": max_pixels, "finish": finish.record()},
    )
    return info.model_uri
