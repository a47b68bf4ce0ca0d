"""Torch datasets over the prepared shard stores: random (content, style) crop pairs for training and a
fixed, pre-drawn list of pairs for evaluation and debugging."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from stylepipe.core.errors import InputError
from stylepipe.data.shards import ShardStore


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> contiguous float tensor [3, H, W] in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).float().div_(255.0)


def short_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is `size`, aspect ratio kept."""
    s = size / min(width, height)
    return max(size, round(width * s)), max(size, round(height * s))


def resize_short(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side equals `size` (up or down), keeping the aspect ratio."""
    new = short_side_size(*img.size, size)
    return img if new == img.size else img.resize(new, Image.Resampling.BICUBIC)


def center_resize_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size`, then take the centre size x size crop."""
    img = resize_short(img, size)
    x, y = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((x, y, x + size, y + size))


@dataclass(frozen=True)
class CropBox:
    """Where a random crop comes from: resize the image to `size` first when it differs from the stored
    size (images smaller than the crop are upscaled), take `crop` x `crop` at (x, y), then maybe flip."""

    size: tuple[int, int]
    x: int
    y: int
    crop: int
    flip: bool


def draw_crop(width: int, height: int, crop: int, rng: np.random.Generator) -> CropBox:
    """A random crop of a stored width x height image, drawn without decoding it (from the manifest)."""
    if min(width, height) < crop:
        width, height = short_side_size(width, height, crop)
    x = int(rng.integers(0, width - crop + 1))
    y = int(rng.integers(0, height - crop + 1))
    return CropBox((width, height), x, y, crop, bool(rng.random() < 0.5))


def apply_crop(img: Image.Image, box: CropBox) -> Image.Image:
    """Cut `box` out of a decoded PIL image."""
    if img.size != box.size:
        img = img.resize(box.size, Image.Resampling.BICUBIC)
    out = img.crop((box.x, box.y, box.x + box.crop, box.y + box.crop))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if box.flip else out


def apply_crop_tensor(img: torch.Tensor, box: CropBox) -> torch.Tensor:
    """Cut `box` out of a decoded uint8 [3, H, W] tensor (on any device)."""
    if (img.shape[2], img.shape[1]) != box.size:
        size = [box.size[1], box.size[0]]
        img = torch.nn.functional.interpolate(img[None].float(), size=size, mode="bicubic", antialias=True,
                                              align_corners=False)[0].round_().clamp_(0, 255).to(torch.uint8)
    out = img[:, box.y : box.y + box.crop, box.x : box.x + box.crop]
    return out.flip(-1) if box.flip else out


def _split_indices(store: ShardStore, split: str) -> list[int]:
    idx = store.indices(split)
    if not idx:
        raise InputError(f"{store.dir}: no images in split {split!r}")
    return idx


def worker_share(length: int, worker: int, num_workers: int, unit: int = 1) -> int:
    """How many of `length` items worker `worker` of `num_workers` yields (shares sum to length), in
    whole `unit`s (a batch: DataLoader batches each worker's items separately) but the last remainder."""
    units, rest = divmod(length, unit)
    share = (units // num_workers + (1 if worker < units % num_workers else 0)) * unit
    return share + (rest if worker == units % num_workers else 0)


class RandomPairs(IterableDataset):
    """`length` random (content, style) crop pairs per epoch, [3, crop, crop] floats in [0, 1].

    The random stream depends on (seed, epoch, worker id) and, under torchrun, on the process rank;
    call `set_epoch` before each epoch (with non-persistent DataLoader workers, the default). The
    length (this process's share) is split across workers exactly, in whole batches of `batch` pairs
    (each DataLoader worker batches its own pairs: a split mid-batch would leave short batches).
    """

    def __init__(self, content: ShardStore, style: ShardStore, crop: int, split: str = "train",
                 seed: int = 0, length: int = 1000, rank: int = 0, world_size: int = 1, batch: int = 1) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.content, self.style = content, style
        self.crop, self.split, self.seed, self.length = crop, split, seed, length
        self.rank, self.world_size, self.batch = rank, world_size, batch
        self.content_idx = _split_indices(content, split)
        self.style_idx = _split_indices(style, split)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def draws(self, worker: int = 0, num_workers: int = 1) -> Iterator[tuple[int, CropBox, int, CropBox]]:
        """(content index, its crop, style index, its crop) for one worker's share of the epoch."""
        key = [self.seed, self.epoch, worker, num_workers]
        rng = np.random.default_rng(key if self.world_size == 1 else [*key, self.rank, self.world_size])
        crc, crs = self.content.records, self.style.records
        for _ in range(worker_share(self.length, worker, num_workers, self.batch)):
            ci = self.content_idx[int(rng.integers(len(self.content_idx)))]
            si = self.style_idx[int(rng.integers(len(self.style_idx)))]
            c_box = draw_crop(crc[ci]["width"], crc[ci]["height"], self.crop, rng)
            s_box = draw_crop(crs[si]["width"], crs[si]["height"], self.crop, rng)
            yield ci, c_box, si, s_box

    def _my_draws(self) -> Iterator[tuple[int, CropBox, int, CropBox]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.draws(worker, num_workers)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for ci, c_box, si, s_box in self._my_draws():
            c = apply_crop(self.content.read_image(ci), c_box)
            s = apply_crop(self.style.read_image(si), s_box)
            yield image_to_tensor(c), image_to_tensor(s)


class EncodedPairs(RandomPairs):
    """The same pairs as RandomPairs (same seed -> same images and crops), left JPEG-encoded: the workers
    only slice bytes out of the shards, and `decode_batch` decodes a whole batch at once, e.g. with
    nvJPEG on the GPU. Load with `batch_size=B, collate_fn=list` and pass each batch to `decode_batch`."""

    def __iter__(self) -> Iterator[tuple[bytes, CropBox, bytes, CropBox]]:  # type: ignore[override]
        for ci, c_box, si, s_box in self._my_draws():
            yield self.content.read_bytes(ci), c_box, self.style.read_bytes(si), s_box


def decode_batch(batch: list[tuple[bytes, CropBox, bytes, CropBox]],
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and crop an EncodedPairs batch on `device` (nvJPEG when CUDA): float [B, 3, crop, crop] x 2."""
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(blobs: list[bytes], boxes: list[CropBox]) -> torch.Tensor:
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        with warnings.catch_warnings():  # torchvision 0.29 points to torchcodec, not installed here
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        crops = [apply_crop_tensor(img, box) for img, box in zip(images, boxes, strict=True)]
        return torch.stack(crops).float().div_(255.0)

    return (decode([b[0] for b in batch], [b[1] for b in batch]),
            decode([b[2] for b in batch], [b[3] for b in batch]))


def fixed_pairs(content: ShardStore, style: ShardStore, n: int, seed: int, size: int,
                split: str = "val") -> list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """`n` deterministic (content, style, info) pairs, centre-resize-cropped to `size`; styles cycle
    through every label present in `split` so each style appears (when n >= number of labels)."""
    rng = np.random.default_rng(seed)
    c_idx = _split_indices(content, split)
    s_idx = _split_indices(style, split)
    by_label: dict[Any, list[int]] = {}
    for i in s_idx:
        by_label.setdefault(style.records[i]["label"], []).append(i)
    labels = sorted(by_label, key=str)
    c_order = [c_idx[j] for j in rng.permutation(len(c_idx))]
    s_orders = {lab: [by_label[lab][j] for j in rng.permutation(len(by_label[lab]))] for lab in labels}
    pairs = []
    for k in range(n):
        lab = labels[k % len(labels)]
        ci = c_order[k % len(c_order)]
        si = s_orders[lab][(k // len(labels)) % len(s_orders[lab])]
        info = {"content_index": ci, "style_index": si, "content_id": content.records[ci]["id"],
                "style_id": style.records[si]["id"], "style_label": lab}
        c = image_to_tensor(center_resize_crop(content.read_image(ci), size))
        s = image_to_tensor(center_resize_crop(style.read_image(si), size))
        pairs.append((c, s, info))
    return pairs
