"""The embedded offline sample: colour photos shipped with scikit-image / scikit-learn (content, COCO
layout) and paintings generated from them (style, WikiArt layout). Deterministic from the seed."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stylepipe.core.config import SampleParams
from stylepipe.core.errors import StylepipeError
from stylepipe.data.paintings import ARTISTS, STYLES, generate_painting

# Colour RGB photos bundled inside the scikit-image wheel (no pooch download needed).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_motorcycle",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
# Photos with a clear subject: the sources paintings are rendered from.
PAINTING_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "china", "flower")
JPEG_QUALITY = 92
TITLES = ("morning", "harbour", "garden", "portrait", "river", "evening", "study", "composition",
          "still-life", "landscape", "city", "dream")


def _skimage_photo(name: str) -> np.ndarray | None:
    """Load one scikit-image sample if it is bundled locally and is a colour RGB image."""
    try:
        import skimage.data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = getattr(skimage.data, name)()
    except Exception:  # missing attribute, needs pooch/network, ...
        return None
    if isinstance(arr, tuple):  # stereo_motorcycle -> (left, right, disparity)
        arr = arr[0]
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        return None
    return arr


def _sklearn_photos() -> list[tuple[str, np.ndarray]]:
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        return []
    out = []
    for name in SKLEARN_PHOTOS:
        try:
            out.append((Path(name).stem, np.asarray(load_sample_image(name))))
        except Exception:
            continue
    return out


def content_photos(max_side: int) -> list[tuple[str, Image.Image]]:
    """The bundled colour photos, in a fixed order, resized so the longer side <= max_side."""
    photos: list[tuple[str, np.ndarray]] = []
    for name in SKIMAGE_PHOTOS:
        arr = _skimage_photo(name)
        if arr is not None:
            photos.append((name, arr))
    photos.extend(_sklearn_photos())
    if not photos:
        raise StylepipeError("no bundled sample photos found (scikit-image / scikit-learn missing?)")
    out = []
    for name, arr in photos:
        img = Image.fromarray(arr, "RGB")
        scale = max_side / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        out.append((name, img))
    return out


def jpeg_bytes(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """Deterministic baseline JPEG (no EXIF, no timestamps)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def write_coco(out_dir: Path, photos: list[tuple[str, Image.Image]]) -> dict[str, Any]:
    """Write photos as a COCO image folder + an instances_sample.json pycocotools can load."""
    img_dir = out_dir / "coco" / "images"
    ann_dir = out_dir / "coco" / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for i, (name, img) in enumerate(photos, start=1):
        file_name = f"{i:012d}.jpg"
        (img_dir / file_name).write_bytes(jpeg_bytes(img))
        images.append({"id": i, "file_name": file_name, "width": img.width, "height": img.height,
                       "license": 1, "coco_url": "", "flickr_url": "", "date_captured": "",
                       "sample_source": name})
    ann = {
        "info": {"description": "stylepipe embedded sample (scikit-image / scikit-learn photos)",
                 "version": "1.0", "year": 2024, "contributor": "stylepipe", "url": "",
                 "date_created": ""},
        "licenses": [{"id": 1, "name": "see scikit-image / scikit-learn data licences", "url": ""}],
        "images": images,
        "annotations": [],
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }
    (ann_dir / "instances_sample.json").write_text(json.dumps(ann, indent=1, sort_keys=True) + "\n")
    return {"images": len(images)}


def write_paintings(
    out_dir: Path, photos: list[tuple[str, Image.Image]], params: SampleParams
) -> dict[str, int]:
    """Generate `paintings_per_style` paintings per style into out_dir/wikiart/<Style>/."""
    counts: dict[str, int] = {}
    sources = [p for p in photos if p[0] in PAINTING_SOURCES] or photos
    perms = [np.random.default_rng([params.seed, i]).permutation(len(sources)) for i in range(len(STYLES))]
    for s_idx, style in enumerate(STYLES):
        style_dir = out_dir / "wikiart" / style
        style_dir.mkdir(parents=True, exist_ok=True)
        for k in range(params.paintings_per_style):
            rng = np.random.default_rng([params.seed, s_idx, k])
            photo = sources[perms[s_idx][k % len(sources)]][1]
            img = generate_painting(style, photo, rng, params.painting_size)
            title = f"{TITLES[(s_idx * 5 + k) % len(TITLES)]}-{k + 1}"
            (style_dir / f"{ARTISTS[style]}_{title}.jpg").write_bytes(jpeg_bytes(img))
        counts[style] = params.paintings_per_style
    return counts


def write_sample(out_dir: Path, params: SampleParams) -> dict[str, Any]:
    """Write the whole embedded sample (coco/ + wikiart/) into out_dir; return counts."""
    out_dir = Path(out_dir)
    photos = content_photos(params.max_side)
    coco = write_coco(out_dir, photos)
    styles = write_paintings(out_dir, photos, params)
    return {"content": coco["images"], "style": sum(styles.values()), "styles": styles}
