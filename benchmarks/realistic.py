"""Realistic stand-ins for the full data set, generated offline: COCO-like photos (640 px long side,
~130-160 KB) and WikiArt-like paintings (1,100-1,900 px long side, ~300 KB), in the download layout
(coco/images + coco/annotations/instances_*.json, wikiart/<Style>/), cached under .cache/bench/.

Made from the bundled sample photos: a random crop, rescaled, with film grain so the JPEGs carry as
many bytes per pixel as the real sets (COCO train2017: 18 GB / 118k images; WikiArt: 25 GB / 81k)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(".cache/bench")
# image counts of the full profile: COCO 2017 train + val, WikiArt (ArtGAN)
FULL_COCO, FULL_WIKIART = 118_287 + 5_000, 81_444
COCO_SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 512))
STYLES = ("Impressionism", "Realism", "Baroque", "Cubism")


def _grainy(photo: Image.Image, w: int, h: int, grain: float, rng: np.random.Generator) -> Image.Image:
    s = max(w / photo.width, h / photo.height) * rng.uniform(1.0, 1.5)
    big = photo.resize((int(photo.width * s) + 1, int(photo.height * s) + 1), Image.Resampling.BILINEAR)
    x, y = int(rng.integers(0, big.width - w + 1)), int(rng.integers(0, big.height - h + 1))
    a = np.asarray(big.crop((x, y, x + w, y + h)), dtype=np.float32)
    a += rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    a += rng.normal(0, grain / 2, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def wikiart_size(rng: np.random.Generator) -> tuple[int, int]:
    long = int(rng.integers(1100, 1900))
    short = int(long * rng.uniform(0.62, 0.95))
    return (long, short) if rng.random() < 0.5 else (short, long)


def make_raw(n_coco: int, n_wikiart: int, seed: int = 0, root: Path = CACHE) -> Path:
    """Generate (or reuse) root/raw-<n_coco>-<n_wikiart>-<seed>/; return it."""
    raw = root / f"raw-{n_coco}-{n_wikiart}-{seed}"
    if (raw / "DONE").is_file():
        return raw
    from stylepipe.data.sample import content_photos  # scikit-image photos: only to generate

    rng = np.random.default_rng(seed)
    photos = [p for _, p in content_photos(1024)]
    images = []
    (raw / "coco" / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n_coco):
        w, h = COCO_SIZES[i % len(COCO_SIZES)]
        name = f"{i:012d}.jpg"
        img = _grainy(photos[int(rng.integers(len(photos)))], w, h, 10.0, rng)
        (raw / "coco" / "images" / name).write_bytes(_jpeg(img, 92))
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    ann = {"info": {}, "licenses": [], "images": images, "annotations": [],
           "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}
    (raw / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
    (raw / "coco" / "annotations" / "instances_train.json").write_text(json.dumps(ann))
    for i in range(n_wikiart):
        style_dir = raw / "wikiart" / STYLES[i % len(STYLES)]
        style_dir.mkdir(parents=True, exist_ok=True)
        img = _grainy(photos[int(rng.integers(len(photos)))], *wikiart_size(rng), 2.0, rng)
        (style_dir / f"artist_painting-{i}.jpg").write_bytes(_jpeg(img, 90))
    (raw / "DONE").write_text("")
    return raw


def describe(raw: Path) -> str:
    coco = sorted((raw / "coco" / "images").glob("*.jpg"))
    wiki = sorted((raw / "wikiart").rglob("*.jpg"))
    kb = lambda files: np.mean([f.stat().st_size for f in files]) / 1024  # noqa: E731
    return (f"{len(coco)} COCO-like JPEGs (mean {kb(coco):.0f} KB), {len(wiki)} WikiArt-like JPEGs "
            f"(mean {kb(wiki):.0f} KB, 1100-1900 px long side)")
