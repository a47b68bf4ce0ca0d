"""What every training stage shares: the prepared shard stores, the chunked batch loader, the fixed preview
pairs, one style's representative painting and the digest of a run's inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from stylepipe.core import paths
from stylepipe.core.config import TrainBase
from stylepipe.core.errors import InputError
from stylepipe.core.io import file_digest
from stylepipe.data.augment import jitter_colours
from stylepipe.data.datasets import (
    EncodedPairs,
    RandomPairs,
    center_resize_crop,
    decode_batch,
    fixed_pairs,
    image_to_tensor,
)
from stylepipe.data.shards import ShardStore
from stylepipe.train.distributed import SINGLE, DistEnv, per_rank_batch
from stylepipe.train.loop import Batch

PREVIEW_PAIRS = 4


def open_stores(prepared: Path = paths.PREPARED) -> tuple[ShardStore, ShardStore]:
    """The prepared content and style shard stores."""
    return ShardStore(prepared / "content"), ShardStore(prepared / "style")


def chunk_loader(
    stores: tuple[ShardStore, ShardStore], cfg: TrainBase, seed: int, device: torch.device,
    dist_env: DistEnv = SINGLE, key: str = "train",
) -> Callable[[int], Iterator[Batch]]:
    """chunk index -> iterator over `checkpoint_every` batches drawn with seed (seed, chunk); under
    torchrun, this process's share of each global batch from its own random stream. With
    `decode_on: device` the same pairs arrive JPEG-encoded and are decoded as a batch on `device`.
    `colour_jitter` > 0 re-colours every image (a generator seeded by seed, chunk and rank: resumable)."""
    batch = per_rank_batch(cfg.batch_size, dist_env, key)
    on_device = cfg.decode_on == "device"
    dataset = (EncodedPairs if on_device else RandomPairs)(
        *stores, crop=cfg.crop, split="train", seed=seed, length=cfg.checkpoint_every * batch,
        rank=dist_env.rank, world_size=dist_env.world_size, batch=batch,
    )

    def batches(chunk: int) -> Iterator[Batch]:
        dataset.set_epoch(chunk)
        loader = DataLoader(
            dataset, batch_size=batch, num_workers=cfg.num_workers, drop_last=True, persistent_workers=False,
            pin_memory=device.type == "cuda" and not on_device, collate_fn=list if on_device else None,
        )
        pairs = (decode_batch(b, device) for b in loader) if on_device else iter(loader)
        if not cfg.colour_jitter:
            return pairs
        generator = torch.Generator().manual_seed(seed * 1_000_003 + chunk * 1009 + dist_env.rank)
        return ((jitter_colours(c, cfg.colour_jitter, generator), jitter_colours(s, cfg.colour_jitter, generator))
                for c, s in pairs)

    return batches


def preview_pairs(
    stores: tuple[ShardStore, ShardStore], size: int, seed: int, split: str = "val"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed pairs (the same every run): of the validation split, rendered during training; of the
    training split, what a new decoder calibrates its input scale on (the same on every rank)."""
    pairs = fixed_pairs(*stores, n=PREVIEW_PAIRS, seed=seed, size=size, split=split)
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def inputs_digest(*inputs: Path) -> list[str]:
    """One line per input file (folders walked; .bin shards left out: their index file names them), with
    its digest: what a checkpoint key takes from the data and weights a training run reads."""
    digests = []
    for p in inputs:
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        digests += [f"{f}:{file_digest(f)}" for f in files if f.is_file() and f.suffix != ".bin"]
    return digests


def style_image(styles: ShardStore, label: str, size: int) -> torch.Tensor:
    """The one painting that represents style `label` (its first validation image, else its first training
    image), centre-resize-cropped to size x size, [3, size, size] in [0, 1]."""
    candidates = [i for i in styles.indices("val") if styles.records[i]["label"] == label] or [
        i for i in styles.indices("train") if styles.records[i]["label"] == label
    ]
    if not candidates:
        raise InputError(f"{styles.dir}: no painting of style {label!r} (styles present: {styles.labels})")
    return image_to_tensor(center_resize_crop(styles.read_image(candidates[0]), size))
