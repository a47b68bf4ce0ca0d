"""`stylepipe stylize`: apply the trained AdaIN model (or a Johnson per-style network, `--model
johnson:<style>`) to an image or a folder of images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from stylepipe import paths
from stylepipe.data.datasets import image_to_tensor
from stylepipe.models.adain import load_stylizer
from stylepipe.viz import to_pil

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class StylizeError(ValueError):
    """An input image cannot be read or an option is out of range."""


def read_image(path: Path, size: int = 0) -> torch.Tensor:
    """RGB tensor in [0,1]; `size` > 0 resizes the shorter side (never upscales); crops to multiples of 8."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise StylizeError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise StylizeError(f"{path}: not a readable image ({err})") from None
    if size and min(rgb.size) > size:
        scale = size / min(rgb.size)
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.LANCZOS)
    w, h = rgb.width - rgb.width % 8, rgb.height - rgb.height % 8
    if w < 8 or h < 8:
        raise StylizeError(f"{path}: image {rgb.size} is too small (need at least 8x8)")
    return image_to_tensor(rgb.crop((0, 0, w, h)))


def _inputs(content: Path) -> list[Path]:
    if content.is_dir():
        return sorted(p for p in content.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [content]


def _stylizer(
    model: str, style: Path | None, size: int, alpha: float, encoder: Path, decoder: Path
) -> Callable[[torch.Tensor], torch.Tensor]:
    """image batch -> stylised batch for `model` ('adain' or 'johnson:<style>')."""
    from stylepipe.models.johnson import load_johnson_stylizer, parse_model_name

    johnson_style = parse_model_name(model)
    if johnson_style is not None:
        return load_johnson_stylizer(johnson_style)
    if style is None:
        raise StylizeError("a style image is needed with the AdaIN model (or use --model johnson:<style>)")
    adain_model = load_stylizer(encoder, decoder)
    style_mean, style_std = adain_model.style_stats(read_image(style, size)[None])
    return lambda x: adain_model(x, style_mean, style_std, alpha)


@torch.no_grad()
def stylize_files(
    content: Path, style: Path | None, output: Path, alpha: float = 1.0, size: int = 0,
    encoder: Path = paths.ENCODER, decoder: Path = paths.DECODER, model: str = "adain",
) -> dict:
    """Stylise one image (output is a file) or every image of a folder (output is a folder)."""
    if not 0.0 <= alpha <= 1.0:
        raise StylizeError(f"--alpha {alpha} is out of range: expected 0..1")
    apply = _stylizer(model, style, size, alpha, encoder, decoder)
    files = _inputs(content)
    written, skipped = [], {}
    for path in files:
        try:
            img = read_image(path, size)
        except StylizeError as err:
            if not content.is_dir():
                raise
            skipped[str(path)] = str(err)
            continue
        out = apply(img[None])[0]
        target = output / f"{path.stem}_stylized.png" if content.is_dir() else output
        target.parent.mkdir(parents=True, exist_ok=True)
        to_pil(out).save(target)
        written.append(str(target))
    return {"written": written, "skipped": skipped}
