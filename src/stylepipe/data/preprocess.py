"""The preprocess stage: open archives safely, list COCO images with pycocotools, decode + validate +
resize every image in parallel, split train/val deterministically, write two shard stores + a report."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import multiprocessing
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, ImageOps
from tqdm import tqdm

from stylepipe.core import paths
from stylepipe.core.config import Params
from stylepipe.core.cpus import granted_cpus
from stylepipe.core.errors import InputError, MissingInputError, StylepipeError
from stylepipe.core.io import atomic_dir, remove_stale_tmp, write_json
from stylepipe.core.media import IMAGE_FORMATS, open_allowed, to_rgb
from stylepipe.data.archives import DEFAULT_MAX_MEMBERS, extract_to_cache, is_archive
from stylepipe.data.shards import ShardWriter

EXTRACT_DIR = Path(".cache/extract")
JPEG_QUALITY = 90
DOMAINS = ("content", "style")


class ImageRejected(InputError):
    """An input image that cannot be used (corrupt, truncated, too small, too large...)."""


@dataclass(frozen=True)
class Item:
    """One input image: domain ("content"/"style"), a unique name, its path and label."""

    domain: str
    name: str
    path: str
    label: str | None
    source: str


# ----------------------------------------------------------------------------- listing inputs


def _coco_image_dirs(roots: list[Path], split: str) -> list[Path]:
    dirs = []
    for root in roots:
        dirs += [root / split, root / "images" / split, root / "images", root]
    return [d for d in dirs if d.is_dir()]


def _file_name_problem(file_name: object) -> str | None:
    """A COCO file_name must name a file inside the image folders: an absolute path or `..` would pull
    any readable file of this machine into the shards."""
    if not isinstance(file_name, str) or not file_name:
        return "file_name is not a file name"
    p = PurePosixPath(file_name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (len(file_name) > 1 and file_name[1] == ":"):
        return "file_name must be a relative path inside the image folder (no absolute path, no '..')"
    return None


def list_coco(ann_files: list[Path], roots: list[Path], rejected: list[dict[str, str]]) -> list[Item]:
    """List content images with pycocotools; images missing on disk are rejected."""
    from pycocotools.coco import COCO

    items: dict[str, Item] = {}
    for ann in sorted(ann_files):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann))
        split = ann.stem.removeprefix("instances_")
        dirs = _coco_image_dirs([*roots, ann.parent.parent], split)
        for img_id in sorted(coco.imgs):
            file_name = coco.imgs[img_id]["file_name"]
            if problem := _file_name_problem(file_name):
                rejected.append({"domain": "content", "path": f"{ann}:{file_name}", "reason": problem})
                continue
            path = next((d / file_name for d in dirs if (d / file_name).is_file()), None)
            if path is None:
                rejected.append({"domain": "content", "path": f"{ann}:{file_name}",
                                 "reason": "listed in the annotations but missing on disk"})
                continue
            items.setdefault(str(path), Item("content", file_name, str(path), None, "coco"))
    return list(items.values())


def list_wikiart(root: Path) -> list[Item]:
    """List style images as root/<Style>/<file>; the label is the style folder name."""
    items = []
    for style_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(style_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                items.append(Item("style", f"{style_dir.name}/{f.name}", str(f), style_dir.name, "wikiart"))
    return items


def locate_inputs(
    raw_dir: Path, extract_dir: Path, max_bytes: int, rejected: list[dict[str, str]],
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> tuple[list[Path], list[Path], Path | None]:
    """Return (COCO annotation files, COCO search roots, WikiArt root), extracting archives if needed."""
    roots = [raw_dir]
    if not (raw_dir / "coco").is_dir() or not (raw_dir / "wikiart").is_dir():
        for archive in sorted(p for p in raw_dir.iterdir() if p.is_file() and is_archive(p)):
            def bad(name: str, why: str, a: Path = archive) -> None:
                rejected.append({"domain": "archive", "path": f"{a}:{name}", "reason": why})

            roots.append(extract_to_cache(archive, extract_dir, max_bytes, bad, max_members))
    coco_roots = [r / "coco" for r in roots if (r / "coco").is_dir()] + roots
    ann_files = sorted({a for r in coco_roots for a in r.glob("annotations/instances_*.json")})
    wikiart = next((r / "wikiart" for r in roots if (r / "wikiart").is_dir()), None)
    if wikiart is not None and (wikiart / "wikiart").is_dir():  # zip with a top-level wikiart/ folder
        wikiart = wikiart / "wikiart"
    return ann_files, coco_roots, wikiart


# ----------------------------------------------------------------------------- one image


def resized_size(w: int, h: int, short_side: int) -> tuple[int, int]:
    """Size with the shorter side == short_side (never upscaling), aspect ratio kept."""
    s = min(w, h)
    if s <= short_side:
        return w, h
    if w <= h:
        return short_side, max(1, round(h * short_side / w))
    return max(1, round(w * short_side / h)), short_side


def _reusable_jpeg(img: Image.Image) -> bool:
    """A baseline RGB JPEG with no EXIF rotation: stored as is when it needs no resize (no generation
    loss, no re-encoding: most COCO photos are 640 px and already below short_side 512 + margin)."""
    progressive = img.info.get("progressive") or img.info.get("progression")
    return img.format == "JPEG" and img.mode == "RGB" and not progressive and img.getexif().get(0x0112, 1) == 1


def convert_image(path: str, short_side: int, min_side: int) -> tuple[bytes, int, int]:
    """Decode, validate, convert to RGB, resize and re-encode one image; raise ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            data = Path(path).read_bytes()  # once: decoded below, and stored as is when reusable
            with open_allowed(io.BytesIO(data)) as img:
                w, h = img.size
                if min(w, h) < min_side:
                    raise ImageRejected(f"too small: {w}x{h} (shorter side < {min_side})")
                reusable = _reusable_jpeg(img)
                if img.format == "JPEG" and min(w, h) > short_side:
                    f = short_side / min(w, h)
                    img.draft(img.mode, (math.ceil(w * f), math.ceil(h * f)))
                img.load()  # a full decode: truncated and corrupt files fail here
                if reusable and resized_size(w, h, short_side) == (w, h):
                    return data, w, h
                img = ImageOps.exif_transpose(to_rgb(img))
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"decompression bomb: {err}") from None
    except Image.UnidentifiedImageError:
        size = os.path.getsize(path) if os.path.exists(path) else -1
        raise ImageRejected("empty file (0 bytes)" if size == 0 else
                            f"not a recognised image (accepted formats: {', '.join(IMAGE_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"corrupt or truncated: {err}") from None
    size = resized_size(*img.size, short_side)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue(), img.width, img.height


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Set PIL's decompression-bomb limit for the block (restored afterwards)."""
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _init_worker(max_pixels: int) -> None:
    Image.MAX_IMAGE_PIXELS = max_pixels


Result = tuple[int, bytes | None, int, int, str | None]


def _process(job: tuple[int, str, int, int]) -> Result:
    index, path, short_side, min_side = job
    try:
        data, w, h = convert_image(path, short_side, min_side)
    except ImageRejected as err:
        return index, None, 0, 0, str(err)
    except Exception as err:  # one bad image never stops the stage
        return index, None, 0, 0, f"unexpected error: {type(err).__name__}: {err}"
    return index, data, w, h, None


# ----------------------------------------------------------------------------- split


def split_fraction(seed: int, name: str) -> float:
    """Uniform value in [0, 1) from sha1(f"{seed}:{name}")."""
    return int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:13], 16) / 16**13


def assign_splits(names: list[str], groups: list[list[int]], seed: int, val_fraction: float) -> list[str]:
    """Hash split of `names`; each index group of >= 2 gets at least one val and one train item."""
    frac = [split_fraction(seed, n) for n in names]
    split = ["val" if f < val_fraction else "train" for f in frac]
    for group in groups:
        if len(group) < 2:
            continue
        if all(split[i] == "train" for i in group):
            split[min(group, key=lambda i: (frac[i], names[i]))] = "val"
        if all(split[i] == "val" for i in group):
            split[max(group, key=lambda i: (frac[i], names[i]))] = "train"
    return split


def _split_groups(items: list[Item]) -> list[list[int]]:
    by_label: dict[str | None, list[int]] = {}
    for i, it in enumerate(items):
        by_label.setdefault(it.label, []).append(i)
    groups = [g for label, g in sorted(by_label.items(), key=lambda kv: str(kv[0])) if label is not None]
    return [*groups, list(range(len(items)))]


# ----------------------------------------------------------------------------- stage


class WorkerLostError(StylepipeError):
    """A preprocess worker process died (the OOM killer, a signal) instead of returning its images."""


def _results(items: list[Item], params: Params, progress: bool) -> Iterator[Result]:
    """Convert every item on the CPUs this process was granted; yield the results in input order as they
    arrive. A worker that dies is a WorkerLostError, where a multiprocessing.Pool would wait forever."""
    pp = params.preprocess
    jobs = [(i, it.path, pp.short_side, pp.min_side) for i, it in enumerate(items)]
    workers = pp.workers or granted_cpus()
    with tqdm(total=len(jobs), desc="preprocess", unit="img", disable=not progress, smoothing=0.05) as bar:
        if workers <= 1 or len(jobs) < 2 * workers:
            with pixel_limit(pp.max_image_pixels):
                for job in jobs:
                    yield _process(job)
                    bar.update()
            return
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        chunk = max(1, min(64, len(jobs) // (workers * 8)))
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(pp.max_image_pixels,))
        try:
            for res in pool.map(_process, jobs, chunksize=chunk):
                yield res
                bar.update()
        except BrokenProcessPool:
            raise WorkerLostError(
                f"preprocess: a worker process died after {bar.n} of {len(jobs)} images (killed by the "
                f"out-of-memory killer or a signal?); lower preprocess.workers (now {workers}) or give the "
                "job more memory, then re-run: the previous data/prepared is untouched") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # an early stop does not wait for the queued images


def _assign(kept: list[tuple[Item, dict[str, Any]]], params: Params) -> dict[str, Any]:
    """Set each kept record's split (seeded hash of its name); return the domain's counts."""
    good = [it for it, _ in kept]
    splits = assign_splits([it.name for it in good], _split_groups(good), params.common.seed,
                           params.preprocess.val_fraction)
    counts: dict[str, Any] = {"train": 0, "val": 0}
    labels: dict[str, dict[str, int]] = {}
    for (it, record), split in zip(kept, splits, strict=True):
        record["split"] = split
        counts[split] += 1
        if it.label is not None:
            labels.setdefault(it.label, {"train": 0, "val": 0})[split] += 1
    if labels:
        counts["labels"] = labels
    return counts


def write_stores(out: Path, items: list[Item], results: Iterator[Result], params: Params,
                 rejected: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Stream converted images into out/<domain>/ shard stores (memory holds only the manifest records);
    list rejections; assign the splits once every image is known; return counts per domain."""
    shard_bytes = params.preprocess.shard_max_mb * 1024 * 1024
    writers = {d: ShardWriter(out / d, shard_bytes) for d in DOMAINS}
    kept: dict[str, list[tuple[Item, dict[str, Any]]]] = {d: [] for d in DOMAINS}
    n_rejected = dict.fromkeys(DOMAINS, 0)
    for it, (_, data, w, h, err) in zip(items, results, strict=True):
        if data is None:
            rejected.append({"domain": it.domain, "path": it.path, "reason": err or "no data"})
            n_rejected[it.domain] += 1
            continue
        record = writers[it.domain].add(data, id=it.name, source=it.source, split=None, label=it.label,
                                        width=w, height=h)
        kept[it.domain].append((it, record))
    counts = {}
    for d in DOMAINS:
        counts[d] = _assign(kept[d], params) | {"rejected": n_rejected[d]}
        writers[d].close()
    return counts


def run_preprocess(
    params: Params,
    raw_dir: Path = paths.RAW,
    out_dir: Path = paths.PREPARED,
    extract_dir: Path = EXTRACT_DIR,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the preprocess stage; write out_dir/{content,style}/ shard stores and out_dir/report.json."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise MissingInputError(f"{raw_dir}: raw data directory not found (run the download stage)")
    rejected: list[dict[str, str]] = []
    ann_files, coco_roots, wikiart = locate_inputs(raw_dir, extract_dir, params.preprocess.max_archive_bytes,
                                                   rejected, params.preprocess.max_archive_members)
    if not ann_files:
        raise MissingInputError(f"{raw_dir}: no COCO annotations/instances_*.json found (or in its archives)")
    if wikiart is None:
        raise MissingInputError(f"{raw_dir}: no wikiart/<Style>/ folder found (or in its archives); with the "
                                "full profile, add wikiart.zip to download.remote.files (see profiles/full.yaml)")
    items = list_coco(ann_files, coco_roots, rejected) + list_wikiart(wikiart)
    report: dict[str, Any] = {"short_side": params.preprocess.short_side, "jpeg_quality": JPEG_QUALITY}
    remove_stale_tmp(out_dir)  # left by a run killed mid-way; the new run starts clean (no duplicates)
    with atomic_dir(out_dir) as tmp:
        report |= write_stores(tmp, items, _results(items, params, progress), params, rejected)
        report["rejected"] = rejected
        write_json(tmp / "report.json", report)
    return report
