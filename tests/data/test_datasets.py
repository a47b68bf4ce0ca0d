"""datasets: random pairs (determinism, worker split, epochs), fixed pairs, shapes and ranges."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from stylepipe.data.datasets import RandomPairs, center_resize_crop, fixed_pairs, worker_share
from stylepipe.data.shards import ShardStore
from tests.data_fixtures import shard_store

CROP = 32


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShardStore, ShardStore]:
    root = tmp_path_factory.mktemp("stores")
    content = shard_store(root / "content", [("train", None, (80, 60)), ("train", None, (20, 24)),
                                        ("train", None, (120, 64)), ("val", None, (64, 64)),
                                        ("val", None, (90, 50))])
    style = shard_store(root / "style", [("train", "A", (70, 70)), ("val", "A", (60, 80)),
                                    ("train", "B", (50, 40)),
                                    ("val", "B", (64, 48)), ("val", "C", (40, 64))])
    return content, style


def test_shards_roundtrip(stores: tuple[ShardStore, ShardStore]) -> None:
    content, style = stores
    assert len({r["shard"] for r in content.records}) > 1  # several shards
    assert content.read_image(2).size == (120, 64)
    assert style.labels == ["A", "B", "C"]
    assert style.indices("val") == [1, 3, 4]


def _collect(ds: RandomPairs, workers: int) -> list[torch.Tensor]:
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    return [torch.cat([c.flatten(), s.flatten()]) for c, s in loader]


def test_shapes_ranges_and_determinism(stores: tuple[ShardStore, ShardStore]) -> None:
    ds = RandomPairs(*stores, crop=CROP, seed=3, length=7)
    items = list(ds)
    assert len(items) == len(ds) == 7
    for c, s in items:
        assert c.shape == s.shape == (3, CROP, CROP) and c.dtype == torch.float32
        assert float(c.min()) >= 0.0 and float(c.max()) <= 1.0
    again = list(RandomPairs(*stores, crop=CROP, seed=3, length=7))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(items, again, strict=True))
    other = list(RandomPairs(*stores, crop=CROP, seed=4, length=7))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(items, other, strict=True))


def test_epochs_differ(stores: tuple[ShardStore, ShardStore]) -> None:
    ds = RandomPairs(*stores, crop=CROP, seed=0, length=6)
    e0 = [c for c, _ in ds]
    ds.set_epoch(1)
    e1 = [c for c, _ in ds]
    assert not all(torch.equal(a, b) for a, b in zip(e0, e1, strict=True))


def test_worker_split(stores: tuple[ShardStore, ShardStore]) -> None:
    assert [worker_share(7, w, 3) for w in range(3)] == [3, 2, 2]
    ds = RandomPairs(*stores, crop=CROP, seed=1, length=9)
    items = _collect(ds, workers=2)
    assert len(items) == 9
    assert len({tuple(t[::97].tolist()) for t in items}) == 9  # no duplicates between workers
    assert len(_collect(ds, workers=2)) == 9 and all(
        torch.equal(a, b) for a, b in zip(items, _collect(ds, workers=2), strict=True))


def test_fixed_pairs_cycle_styles(stores: tuple[ShardStore, ShardStore]) -> None:
    content, style = stores
    pairs = fixed_pairs(content, style, n=4, seed=0, size=48)
    assert [p[2]["style_label"] for p in pairs] == ["A", "B", "C", "A"]
    assert all(style.records[p[2]["style_index"]]["split"] == "val" for p in pairs)
    for c, s, _ in pairs:
        assert c.shape == s.shape == (3, 48, 48)
    again = fixed_pairs(content, style, n=4, seed=0, size=48)
    assert all(torch.equal(a[0], b[0]) and a[2] == b[2] for a, b in zip(pairs, again, strict=True))


def test_center_resize_crop_upscales_small(stores: tuple[ShardStore, ShardStore]) -> None:
    content, _ = stores
    assert center_resize_crop(content.read_image(1), 64).size == (64, 64)


def test_encoded_pairs_decode_to_the_same_crops(stores: tuple[ShardStore, ShardStore]) -> None:
    from stylepipe.data.datasets import EncodedPairs, decode_batch

    decoded = list(RandomPairs(*stores, crop=CROP, seed=5, length=6))
    loader = DataLoader(EncodedPairs(*stores, crop=CROP, seed=5, length=6), batch_size=3, collate_fn=list)
    batches = [decode_batch(b, "cpu") for b in loader]
    content = torch.cat([c for c, _ in batches])
    style = torch.cat([s for _, s in batches])
    assert content.shape == style.shape == (6, 3, CROP, CROP) and content.dtype == torch.float32
    for k, (c, s) in enumerate(decoded):
        # same images and crops; PIL and torchvision decode/upscale with different rounding
        assert (content[k] - c).abs().mean() < 2 / 255 and (style[k] - s).abs().mean() < 2 / 255, k


def test_crop_box_from_manifest(stores: tuple[ShardStore, ShardStore]) -> None:
    import numpy as np

    from stylepipe.data.datasets import apply_crop_tensor, draw_crop

    rng = np.random.default_rng(0)
    small = draw_crop(20, 24, CROP, rng)
    assert small.size == (CROP, round(24 * CROP / 20)) and 0 <= small.y <= small.size[1] - CROP
    boxes = [draw_crop(80, 60, CROP, rng) for _ in range(50)]
    assert {b.flip for b in boxes} == {True, False}
    assert max(b.x for b in boxes) <= 80 - CROP and max(b.y for b in boxes) <= 60 - CROP
    img = torch.arange(3 * 60 * 80, dtype=torch.int64).reshape(3, 60, 80).to(torch.uint8)
    out = apply_crop_tensor(img, boxes[0])
    expect = img[:, boxes[0].y : boxes[0].y + CROP, boxes[0].x : boxes[0].x + CROP]
    assert torch.equal(out, expect.flip(-1) if boxes[0].flip else expect)


def test_worker_split_keeps_whole_batches(stores: tuple[ShardStore, ShardStore]) -> None:
    """More workers than batches, and shares that are not multiples of the batch: every batch is full
    and the loader yields exactly length / batch batches (the training loop relies on the count)."""
    ds = RandomPairs(*stores, crop=CROP, seed=1, length=20, batch=4)
    batches = list(DataLoader(ds, batch_size=4, num_workers=3, drop_last=True))
    assert [c.shape[0] for c, _ in batches] == [4] * 5
    assert worker_share(20, 0, 3, unit=4) == 8 and worker_share(22, 2, 3, unit=4) == 4 + 2
