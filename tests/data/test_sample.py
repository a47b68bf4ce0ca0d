"""The embedded sample: COCO layout loadable by pycocotools, WikiArt layout, deterministic bytes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from stylepipe.core.config import SampleParams
from stylepipe.data.paintings import STYLES
from stylepipe.data.sample import write_sample

PARAMS = SampleParams(seed=0, max_side=128, paintings_per_style=2, painting_size=96)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_layout_and_determinism(tmp_path: Path) -> None:
    counts = write_sample(tmp_path / "a", PARAMS)
    write_sample(tmp_path / "b", PARAMS)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert counts["content"] >= 8 and counts["style"] == 2 * len(STYLES) >= 8
    styles = sorted(p.name for p in (tmp_path / "a" / "wikiart").iterdir())
    assert styles == sorted(STYLES)
    for f in (tmp_path / "a" / "wikiart").rglob("*.jpg"):
        assert "_" in f.stem and Image.open(f).size == (96, 96)
    other = write_sample(tmp_path / "c", PARAMS.model_copy(update={"seed": 1}))
    assert other == counts and _files(tmp_path / "a") != _files(tmp_path / "c")


def test_coco_json_loads_with_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    write_sample(tmp_path, PARAMS)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "coco" / "annotations" / "instances_sample.json"))
    assert coco.imgs
    for img in coco.imgs.values():
        pil = Image.open(tmp_path / "coco" / "images" / img["file_name"])
        assert pil.mode == "RGB" and pil.size == (img["width"], img["height"]) and max(pil.size) <= 128
        assert img["file_name"] == f"{img['id']:012d}.jpg"


def test_styles_differ(tmp_path: Path) -> None:
    write_sample(tmp_path, PARAMS)
    means = {}
    for style in STYLES:
        files = sorted((tmp_path / "wikiart" / style).glob("*"))
        arrs = [np.asarray(Image.open(f), np.float32) for f in files]
        assert all(a.std() > 10 for a in arrs), style  # not flat
        means[style] = np.concatenate([a.reshape(-1, 3).mean(0) / 255 for a in arrs])
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(means[a] - means[b]).max() > 0.02, (a, b)
